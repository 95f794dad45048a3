/*
 * usrsctp interop client for actor-socks' SCTP-over-UDP transport.
 *
 *   usrsctp_client HOST PORT client-close|server-close [IDLE_SECONDS]
 *   usrsctp_client HOST PORT manager AUTH EXPECT_AUTH REQUEST EXPECT_REPLY
 *
 * HOST must be an IPv4 or IPv6 literal; PORT is the UDP port of the server
 * (examples/sctp_udp_echo.rs for the first form, the manager of
 * actor-socks --manager-transport udp for the second). Following RFC 6951
 * the SCTP packets travel in UDP datagrams to HOST:PORT
 * (SCTP_REMOTE_UDP_ENCAPS_PORT = PORT); the
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
 * association must survive).
 *
 * MODE manager speaks the manager protocol (docs/manager-protocol.md) to
 * actor-socks: it sends AUTH as one SCTP message, reads one whole message
 * (MSG_EOR) and compares it with EXPECT_AUTH, then sends REQUEST as one
 * message, reads one whole message and compares it with EXPECT_REPLY, then
 * waits for the server's SHUTDOWN (read returns 0: the server closes after
 * its reply). AUTH, REQUEST and the expectations are hex strings (spaces
 * allowed and ignored, e.g. "05 00"). An expectation must match the whole
 * message, unless it ends in '*': then it must be a prefix of the message
 * ("05 02 08*"). REQUEST "-" (with EXPECT_REPLY "-") sends no request: after
 * the auth reply the client only waits for the server's SHUTDOWN (a failed
 * authentication, where the server closes at once). The server must shut
 * down within 5 s of its last reply. The replies are printed in hex.
 *
 * Every mode requires SCTP_ASSOC_CHANGE SCTP_SHUTDOWN_COMP (a clean
 * SHUTDOWN handshake) and no SCTP_COMM_LOST (ABORT); server-close and
 * manager also require the server's SHUTDOWN (SCTP_SHUTDOWN_EVENT).
 * Exit 0 on success, 1 on a failed check, 2 on timeout (20 s plus
 * IDLE_SECONDS), 64 on a usage error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
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

static const char *volatile alarm_msg = "usrsctp_client: FAIL: timed out\n";

static void on_alarm(int sig)
{
	(void)sig;
	const char *msg = alarm_msg;
	if (write(2, msg, strlen(msg)) < 0) {
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

/* Parsed hex argument; prefix: the expectation ended in '*'. */
struct hexbytes {
	unsigned char *b;
	size_t len;
	int prefix;
};

static struct hexbytes parse_hex(const char *what, const char *s, int allow_prefix)
{
	struct hexbytes h = {malloc(strlen(s) / 2 + 1), 0, 0};
	if (h.b == NULL)
		fail("out of memory");
	int hi = -1;
	for (const char *p = s; *p; p++) {
		if (isspace((unsigned char)*p))
			continue;
		if (*p == '*' && allow_prefix && p[1] == '\0' && hi < 0) {
			h.prefix = 1;
			break;
		}
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else {
			fprintf(stderr, "usrsctp_client: %s: not hex: %s\n", what, s);
			exit(64);
		}
		if (hi < 0) {
			hi = v;
		} else {
			h.b[h.len++] = (unsigned char)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0 || (h.len == 0 && !h.prefix)) {
		fprintf(stderr, "usrsctp_client: %s: odd number of hex digits or empty: %s\n",
		        what, s);
		exit(64);
	}
	return h;
}

static void print_hex(const char *label, const char *buf, size_t len)
{
	printf("usrsctp_client: %s (%zu bytes):", label, len);
	for (size_t i = 0; i < len; i++)
		printf(" %02x", (unsigned char)buf[i]);
	printf("\n");
}

/* Reads one whole message and checks it against the expectation. */
static void expect_message(struct socket *sock, const char *label, const struct hexbytes *want,
                           char *buf, size_t cap)
{
	ssize_t n = recv_message(sock, buf, cap);
	if (n < 0)
		fail("recv of the %s: %s", label, strerror(errno));
	if (n == 0)
		fail("association ended while waiting for the %s", label);
	print_hex(label, buf, (size_t)n);
	int ok = want->prefix ? ((size_t)n >= want->len && memcmp(buf, want->b, want->len) == 0)
	                      : ((size_t)n == want->len && memcmp(buf, want->b, want->len) == 0);
	if (!ok) {
		fprintf(stderr, "usrsctp_client: expected %s:",
		        want->prefix ? "a message starting with" : "exactly");
		for (size_t i = 0; i < want->len; i++)
			fprintf(stderr, " %02x", want->b[i]);
		fprintf(stderr, "\n");
		fail("unexpected %s", label);
	}
	printf("usrsctp_client: %s matches (%s)\n", label, want->prefix ? "prefix" : "exact");
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

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s HOST PORT client-close|server-close [IDLE_SECONDS]\n"
	        "       %s HOST PORT manager AUTH_HEX EXPECT_AUTH_HEX REQUEST_HEX|- "
	        "EXPECT_REPLY_HEX|-\n"
	        "       (an expectation ending in '*' is a prefix)\n",
	        argv0, argv0);
	exit(64);
}

int main(int argc, char **argv)
{
	/* Line by line even into a file or pipe: nothing lost on _exit (alarm). */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4)
		usage(argv[0]);
	const char *host = argv[1];
	int port = atoi(argv[2]);
	int manager = strcmp(argv[3], "manager") == 0;
	int server_close = manager || strcmp(argv[3], "server-close") == 0;
	if (!server_close && strcmp(argv[3], "client-close") != 0)
		fail("unknown mode %s", argv[3]);
	if (port <= 0 || port > 65535)
		fail("bad port %s", argv[2]);

	int idle = 0;
	struct hexbytes auth, want_auth, request = {NULL, 0, 0}, want_reply = {NULL, 0, 0};
	int has_request = 0;
	if (manager) {
		if (argc != 8)
			usage(argv[0]);
		auth = parse_hex("AUTH", argv[4], 0);
		want_auth = parse_hex("EXPECT_AUTH", argv[5], 1);
		has_request = strcmp(argv[6], "-") != 0;
		if (has_request != (strcmp(argv[7], "-") != 0)) {
			fprintf(stderr, "usrsctp_client: REQUEST and EXPECT_REPLY must both be '-' "
			                "or both hex\n");
			exit(64);
		}
		if (has_request) {
			request = parse_hex("REQUEST", argv[6], 0);
			want_reply = parse_hex("EXPECT_REPLY", argv[7], 1);
		}
	} else {
		if (argc != 4 && argc != 5)
			usage(argv[0]);
		idle = argc == 5 ? atoi(argv[4]) : 0;
		if (idle < 0 || idle > 300)
			fail("bad idle time %s", argv[4]);
	}
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

	static char buf[65536 + 1024]; /* MAX_MESSAGE_SIZE and some */
	static char big[BIG];
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 31 + 7);
	if (manager) {
		send_message(sock, (const char *)auth.b, auth.len);
		expect_message(sock, "auth reply", &want_auth, buf, sizeof(buf));
		if (has_request) {
			send_message(sock, (const char *)request.b, request.len);
			expect_message(sock, "reply", &want_reply, buf, sizeof(buf));
		}
		/* The server closes now: expect the end of the association, soon
		 * (measured: ~200 ms, its wait for our delayed SACK). Without
		 * this bound a server that kept waiting would still end the
		 * association, after its 10 s manager timeout. */
		alarm_msg = "usrsctp_client: FAIL: the server did not shut down within "
		            "5 s of its last reply\n";
		alarm(5);
	} else {
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
