// An interop peer on Go's crypto/tls: one binary, every scenario, either role.
//
// Usage: peer --role client|server --version 1.2|1.3 --scenario NAME [--port N] --ca F
//
//	[--cert F --key F] [--require-client-cert] [--alpn a,b] [--name HOST] [--size BYTES]
//
// (the flag package takes -name and --name alike; the Java peer takes the same flags).
// A server listens on 127.0.0.1 and prints "PORT=<n>" first. Every peer prints what it
// saw as "key=value" lines on stdout; "error=..." reports a TLS failure, which the
// test judges (a refused certificate is the expected outcome of one scenario).
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

var (
	role       = flag.String("role", "client", "client or server")
	version    = flag.String("version", "1.3", "1.2 or 1.3")
	scenario   = flag.String("scenario", "handshake", "what to do once connected")
	port       = flag.Int("port", 0, "port to connect to (client)")
	caFile     = flag.String("ca", "", "CA certificate (PEM) to trust")
	certFile   = flag.String("cert", "", "certificate chain (PEM) to present")
	keyFile    = flag.String("key", "", "private key (PEM)")
	requireCC  = flag.Bool("require-client-cert", false, "server: demand a client certificate")
	alpn       = flag.String("alpn", "", "comma-separated ALPN protocols")
	serverName = flag.String("name", "trio-tls.example", "name to send and verify")
	size       = flag.Int("size", 4<<20, "bytes each way for duplex")
)

// Every socket operation ends by then: a peer never outlives its test.
const deadline = 60 * time.Second

func pattern(i int) byte { return byte((i % 251) ^ ((i >> 12) & 0xff)) }

func report(key string, value any) { fmt.Printf("%s=%v\n", key, value) }

func config() *tls.Config {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(*caFile)
	must(err)
	if !pool.AppendCertsFromPEM(pem) {
		must(errors.New("no certificate in " + *caFile))
	}
	v := map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}[*version]
	cfg := &tls.Config{MinVersion: v, MaxVersion: v, RootCAs: pool, ServerName: *serverName}
	if *alpn != "" {
		cfg.NextProtos = strings.Split(*alpn, ",")
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		must(err)
		cfg.Certificates = []tls.Certificate{pair}
	}
	if *requireCC {
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return cfg
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(2)
	}
}

func main() {
	flag.Parse()
	cfg := config()
	connections := 1
	if *scenario == "resume" {
		connections = 2
	}
	var listener net.Listener
	if *role == "server" {
		var err error
		listener, err = net.Listen("tcp", "127.0.0.1:0")
		must(err)
		defer listener.Close()
		report("PORT", listener.Addr().(*net.TCPAddr).Port)
	}
	for n := 0; n < connections; n++ {
		var raw net.Conn
		var err error
		if listener != nil {
			listener.(*net.TCPListener).SetDeadline(time.Now().Add(deadline))
			raw, err = listener.Accept()
		} else {
			raw, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", *port), deadline)
		}
		must(err)
		raw.SetDeadline(time.Now().Add(deadline))
		var conn *tls.Conn
		if listener != nil {
			conn = tls.Server(raw, cfg)
		} else {
			conn = tls.Client(raw, cfg)
		}
		if err := run(conn, raw); err != nil {
			report("error", strings.ReplaceAll(err.Error(), "\n", " "))
		}
		raw.Close()
	}
}

func run(conn *tls.Conn, raw net.Conn) error {
	if err := conn.Handshake(); err != nil {
		return err
	}
	state := conn.ConnectionState()
	report("version", map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}[state.Version])
	report("alpn", state.NegotiatedProtocol)
	report("client_cert", len(state.PeerCertificates) > 0 && *role == "server")
	switch *scenario {
	case "handshake", "mtls", "mtls_refused":
		return pingPong(conn)
	case "duplex":
		return duplex(conn, *size)
	case "close", "ragged":
		if _, err := conn.Write([]byte("bye\n")); err != nil {
			return err
		}
		if *scenario == "close" {
			return conn.Close()
		}
		return raw.Close()
	case "halfclose_peer":
		return halfClosePeer(conn)
	case "halfclose_local":
		return halfCloseLocal(conn)
	case "resume":
		return resume(conn)
	}
	return errors.New("unknown scenario " + *scenario)
}

// readEOF reads until the end of the stream and says how it ended.
func readEOF(conn *tls.Conn) ([]byte, error) {
	data, err := io.ReadAll(conn)
	if err != nil {
		report("eof", "error: "+err.Error())
		return data, err
	}
	report("eof", "clean")
	return data, nil
}

func pingPong(conn *tls.Conn) error {
	buf := make([]byte, 5)
	if *role == "client" {
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
	} else {
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if _, err := conn.Write([]byte("pong\n")); err != nil {
			return err
		}
	}
	report("got", strings.TrimSpace(string(buf)))
	// The test's side closes first and cleanly; say whether its close_notify arrived.
	_, err := readEOF(conn)
	if err == nil {
		conn.Close()
	}
	return err
}

func duplex(conn *tls.Conn, total int) error {
	written := make(chan error, 1)
	go func() {
		out := make([]byte, total)
		for i := range out {
			out[i] = pattern(i)
		}
		_, err := conn.Write(out)
		written <- err
	}()
	received, mismatch := 0, -1
	buf := make([]byte, 65536)
	for received < total {
		n, err := conn.Read(buf)
		for i := 0; i < n; i++ {
			if mismatch < 0 && buf[i] != pattern(received+i) {
				mismatch = received + i
			}
		}
		received += n
		// Read may return the last bytes together with io.EOF when close_notify
		// follows them in the same read; only an early end is a failure.
		if err != nil && received < total {
			report("received", received)
			return err
		}
	}
	report("received", received)
	report("mismatch", mismatch)
	if err := <-written; err != nil {
		return err
	}
	return conn.Close()
}

func halfClosePeer(conn *tls.Conn) error {
	out := make([]byte, 65536)
	for i := range out {
		out[i] = pattern(i)
	}
	if _, err := conn.Write(out); err != nil {
		return err
	}
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	data, err := readEOF(conn)
	report("got", strings.TrimSpace(string(data)))
	return err
}

func halfCloseLocal(conn *tls.Conn) error {
	data, err := readEOF(conn)
	if err != nil {
		return err
	}
	want := make([]byte, len(data))
	for i := range want {
		want[i] = pattern(i)
	}
	report("received", len(data))
	report("intact", bytes.Equal(data, want))
	if _, err := fmt.Fprintf(conn, "got %d\n", len(data)); err != nil {
		return err
	}
	return conn.Close()
}

// resume: the server speaks first, so a TLS 1.3 ticket is on the wire before the
// greeting whatever the server's ticket policy; the client closes after reading it.
func resume(conn *tls.Conn) error {
	report("resumed", conn.ConnectionState().DidResume)
	if *role == "server" {
		if _, err := conn.Write([]byte("hello\n")); err != nil {
			return err
		}
		_, err := readEOF(conn)
		return err
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	return conn.Close()
}
