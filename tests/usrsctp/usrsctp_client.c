/*
 * usrsctp interop client for actor-socks' SCTP-over-UDP transport.
 *
 *   usrsctp_client HOST PORT MODE [IDLE_SECONDS]
 *
 * HOST must be an IPv4 or IPv6 literal; PORT is the UDP port of the server
 * (examples/sctp_udp_echo.rs). Following RFC 6951 the SCTP packets travel
 * in UDP datagrams to HOST:PORT (SCTP_REMOTE_UDP_ENCAPS_PORT = PORT); the
 * SCTP destination port inside the common header is PORT too. Our local
 * UDP encapsulation port is a free port picked here: usrsctp_init(0, ...)
 * would open no UDP socket at all (usrsctp 0.9.5 then only has raw IP
 * sockets and never sends a datagram), so a real port is needed.
 *
 * The client connects (one-to-one socket), sends "hello from usrsctp" and a
 * 50000-byte message, checks that both come back unchanged and whole, then:
 *   MODE client-close: shuts down first (usrsctp_shutdown SHUT_WR) and
 *                      waits for the end of the association;
 *   MODE server-close: sends "bye", reads "bye" back, then waits for the
 *                      server's SHUTDOWN (read returns 0).
 * With IDLE_SECONDS the client stays silent that long after the first echo
 * (the server then sends HEARTBEATs, which usrsctp must answer, and the
 * association must survive). In both modes it requires SCTP_ASSOC_CHANGE SCTP_SHUTDOWN_COMP (a clean
 * SHUTDOWN handshake) and no SCTP_COMM_LOST (ABORT). Exit 0 on success,
 * 1 on a failed check, 2 on timeout (20 s plus IDLE_SECONDS).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usrsctp.h>

#define BIG 50000

static int saw_shutdown_comp;
static int saw_comm_lost;
static int saw_shutdown_event;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "usrsctp_client: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "usrsctp_client: FAIL: timed out\n";
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	_exit(2);
}

static void notification(const union sctp_notification *n, size_t len)
{
	if (len < sizeof(n->sn_header))
		return;
	switch (n->sn_header.sn_type) {
	case SCTP_ASSOC_CHANGE: {
		const struct sctp_assoc_change *ac = &n->sn_assoc_change;
		const char *s = "?";
		switch (ac->sac_state) {
		case SCTP_COMM_UP: s = "COMM_UP"; break;
		case SCTP_COMM_LOST: s = "COMM_LOST"; saw_comm_lost = 1; break;
		case SCTP_RESTART: s = "RESTART"; break;
		case SCTP_SHUTDOWN_COMP: s = "SHUTDOWN_COMP"; saw_shutdown_comp = 1; break;
		case SCTP_CANT_STR_ASSOC: s = "CANT_STR_ASSOC"; saw_comm_lost = 1; break;
		}
		printf("usrsctp_client: association change: %s (error %u)\n", s,
		       (unsigned)ac->sac_error);
		break;
	}
	case SCTP_SHUTDOWN_EVENT:
		saw_shutdown_event = 1;
		printf("usrsctp_client: peer sent SHUTDOWN\n");
		break;
	default:
		break;
	}
}

/* A UDP port free on both IPv4 and IPv6 (a dual-stack bind to port 0). */
static uint16_t pick_free_udp_port(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd < 0)
		fail("socket: %s", strerror(errno));
	int off = 0;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	struct sockaddr_in6 a;
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_addr = in6addr_any;
	socklen_t len = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		fail("picking a UDP port: %s", strerror(errno));
	close(fd);
	return ntohs(a.sin6_port);
}

/*
 * Reads one whole message (until MSG_EOR) into buf, handling
 * notifications on the way. Returns its length, or 0 at end of
 * association, or -1 on error.
 */
static ssize_t recv_message(struct socket *sock, char *buf, size_t cap)
{
	size_t have = 0;
	for (;;) {
		struct sctp_rcvinfo rcv;
		socklen_t infolen = sizeof(rcv);
		unsigned int infotype = 0;
		int flags = 0;
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = usrsctp_recvv(sock, buf + have, cap - have, (struct sockaddr *)&from,
		                          &fromlen, &rcv, &infolen, &infotype, &flags);
		if (n < 0)
			return -1;
		if (n == 0)
			return have ? -1 : 0;
		if (flags & MSG_NOTIFICATION) {
			/* Notifications arrive whole in this small use. */
			notification((const union sctp_notification *)(buf + have), (size_t)n);
			continue;
		}
		have += (size_t)n;
		if (flags & MSG_EOR)
			return (ssize_t)have;
		if (have == cap)
			return -1;
	}
}

static void send_message(struct socket *sock, const char *buf, size_t len)
{
	struct sctp_sndinfo snd;
	memset(&snd, 0, sizeof(snd));
	snd.snd_sid = 0;
	snd.snd_flags = 0;
	ssize_t n = usrsctp_sendv(sock, buf, len, NULL, 0, &snd, sizeof(snd), SCTP_SENDV_SNDINFO, 0);
	if (n < 0 || (size_t)n != len)
		fail("sendv of %zu bytes: %s", len, strerror(errno));
}

static void round_trip(struct socket *sock, const char *msg, size_t len, char *buf, size_t cap)
{
	send_message(sock, msg, len);
	ssize_t n = recv_message(sock, buf, cap);
	if (n < 0)
		fail("recv: %s", strerror(errno));
	if (n == 0)
		fail("association ended while waiting for the echo of %zu bytes", len);
	if ((size_t)n != len || memcmp(buf, msg, len) != 0)
		fail("echo mismatch: sent %zu bytes, got %zd", len, n);
	printf("usrsctp_client: echo of %zu bytes ok\n", len);
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT client-close|server-close [IDLE_SECONDS]\n",
		        argv[0]);
		return 64;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]);
	int server_close = strcmp(argv[3], "server-close") == 0;
	if (!server_close && strcmp(argv[3], "client-close") != 0)
		fail("unknown mode %s", argv[3]);
	if (port <= 0 || port > 65535)
		fail("bad port %s", argv[2]);

	int idle = argc == 5 ? atoi(argv[4]) : 0;
	if (idle < 0 || idle > 300)
		fail("bad idle time %s", argv[4]);
	signal(SIGALRM, on_alarm);
	alarm(20 + (unsigned)idle);

	struct sockaddr_storage ss;
	socklen_t sslen;
	int family;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		family = AF_INET;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sslen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		family = AF_INET6;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sslen = sizeof(*sin6);
	} else {
		fail("HOST must be an IP literal: %s", host);
	}

	/* Local UDP encapsulation port. */
	uint16_t local_port = pick_free_udp_port();
	usrsctp_init(local_port, NULL, NULL);
	/* usrsctp skips the CRC32c on loopback by default; our peer checks it. */
	usrsctp_sysctl_set_sctp_no_csum_on_loopback(0);

	struct socket *sock = usrsctp_socket(family, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
	if (sock == NULL)
		fail("usrsctp_socket: %s", strerror(errno));

	uint16_t events[] = {SCTP_ASSOC_CHANGE, SCTP_SHUTDOWN_EVENT};
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		struct sctp_event ev;
		memset(&ev, 0, sizeof(ev));
		ev.se_assoc_id = SCTP_ALL_ASSOC;
		ev.se_type = events[i];
		ev.se_on = 1;
		if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof(ev)) < 0)
			fail("SCTP_EVENT: %s", strerror(errno));
	}
	int on = 1;
	if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_RECVRCVINFO, &on, sizeof(on)) < 0)
		fail("SCTP_RECVRCVINFO: %s", strerror(errno));

	struct sctp_udpencaps encaps;
	memset(&encaps, 0, sizeof(encaps));
	encaps.sue_address.ss_family = (sa_family_t)family;
	encaps.sue_port = htons((uint16_t)port);
	if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_REMOTE_UDP_ENCAPS_PORT, &encaps,
	                       sizeof(encaps)) < 0)
		fail("SCTP_REMOTE_UDP_ENCAPS_PORT: %s", strerror(errno));

	if (usrsctp_connect(sock, (struct sockaddr *)&ss, sslen) < 0)
		fail("connect to %s port %d: %s", host, port, strerror(errno));
	printf("usrsctp_client: connected to %s port %d (SCTP over UDP, local UDP port %u)\n",
	       host, port, (unsigned)local_port);

	static char buf[BIG + 1024];
	static char big[BIG];
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 31 + 7);
	const char *hello = "hello from usrsctp";
	round_trip(sock, hello, strlen(hello), buf, sizeof(buf));
	if (idle > 0) {
		printf("usrsctp_client: idle for %d s\n", idle);
		fflush(stdout);
		sleep((unsigned)idle);
	}
	round_trip(sock, big, BIG, buf, sizeof(buf));

	if (server_close) {
		round_trip(sock, "bye", 3, buf, sizeof(buf));
		/* The server closes now: expect the end of the association. */
	} else {
		if (usrsctp_shutdown(sock, SHUT_WR) < 0)
			fail("usrsctp_shutdown: %s", strerror(errno));
	}
	for (;;) {
		ssize_t n = recv_message(sock, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == ENOTCONN && saw_shutdown_comp)
				break;
			fail("recv while closing: %s", strerror(errno));
		}
		fail("unexpected %zd-byte message while closing", n);
	}
	/* The SHUTDOWN_COMP notification may come with or after the end. */
	for (int i = 0; i < 50 && !saw_shutdown_comp && !saw_comm_lost; i++) {
		ssize_t n = recv_message(sock, buf, sizeof(buf));
		if (n <= 0)
			break;
	}
	usrsctp_close(sock);
	if (saw_comm_lost)
		fail("the association was aborted (COMM_LOST)");
	if (server_close && !saw_shutdown_event)
		fail("no SHUTDOWN from the server");
	if (!saw_shutdown_comp)
		fail("no SHUTDOWN_COMP: the shutdown handshake did not complete");
	printf("usrsctp_client: %s: clean shutdown\n", argv[3]);
	for (int i = 0; i < 300 && usrsctp_finish() != 0; i++)
		usleep(10000);
	return 0;
}
