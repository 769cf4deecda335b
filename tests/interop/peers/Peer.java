// An interop peer on Java's JSSE: one class, every scenario, either role.
//
// Usage: java Peer --role client|server --version 1.2|1.3 --scenario NAME [--port N]
//            --ca F [--cert F --key F] [--require-client-cert] [--alpn a,b] [--name HOST]
//            [--size BYTES] [--updates N]
//
// A server listens on 127.0.0.1 and prints "PORT=<n>" first. Every peer prints what it
// saw as "key=value" lines on stdout; "error=..." reports a TLS failure, which the test
// judges (a refused certificate is the expected outcome of one scenario). Keys are
// PKCS#8 PEM, certificates PEM.

import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public final class Peer {
    // Every socket read ends by then: a peer never outlives its test.
    static final int DEADLINE_MS = 60_000;
    static final Map<String, String> opts = new HashMap<>();

    static byte pattern(long i) {
        return (byte) ((i % 251) ^ ((i >> 12) & 0xff));
    }

    static void report(String key, Object value) {
        System.out.println(key + "=" + value);
        System.out.flush();
    }

    static String opt(String name, String fallback) {
        return opts.getOrDefault(name, fallback);
    }

    public static void main(String[] args) throws Exception {
        for (int i = 0; i < args.length; i++) {
            String name = args[i].substring(2);
            boolean flag = i + 1 >= args.length || args[i + 1].startsWith("--");
            opts.put(name, flag ? "true" : args[++i]);
        }
        SSLContext ctx = context();
        boolean server = opt("role", "client").equals("server");
        String scenario = opt("scenario", "handshake");
        int connections = scenario.equals("resume") ? 2 : 1;
        ServerSocket listener = null;
        if (server) {
            listener = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
            listener.setSoTimeout(DEADLINE_MS);
            report("PORT", listener.getLocalPort());
        }
        for (int n = 0; n < connections; n++) {
            Socket raw;
            if (server) {
                raw = listener.accept();
            } else {
                raw = new Socket();
                raw.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(),
                        Integer.parseInt(opt("port", "0"))), DEADLINE_MS);
            }
            raw.setSoTimeout(DEADLINE_MS);
            try {
                run(wrap(ctx, raw, server), raw, scenario, server);
            } catch (Exception exc) {
                report("error", exc.toString().replace('\n', ' '));
            } finally {
                raw.close();
            }
        }
        if (listener != null) {
            listener.close();
        }
    }

    static SSLSocket wrap(SSLContext ctx, Socket raw, boolean server) throws IOException {
        String name = opt("name", "trio-tls.example");
        SSLSocket sock = (SSLSocket) ctx.getSocketFactory().createSocket(
                raw, server ? null : name, raw.getPort(), true);
        sock.setUseClientMode(!server);
        sock.setEnabledProtocols(new String[] {"TLSv" + opt("version", "1.3")});
        SSLParameters params = sock.getSSLParameters();
        if (opts.containsKey("alpn")) {
            params.setApplicationProtocols(opt("alpn", "").split(","));
        }
        if (!server) {
            params.setEndpointIdentificationAlgorithm("HTTPS");
        }
        params.setNeedClientAuth(server && opts.containsKey("require-client-cert"));
        sock.setSSLParameters(params);
        return sock;
    }

    static SSLContext context() throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = new FileInputStream(opt("ca", ""))) {
            trust.setCertificateEntry("ca", cf.generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
        KeyStore keys = KeyStore.getInstance("PKCS12");
        keys.load(null, null);
        if (opts.containsKey("cert")) {
            Certificate[] chain;
            try (InputStream in = new FileInputStream(opt("cert", ""))) {
                chain = cf.generateCertificates(in).toArray(new Certificate[0]);
            }
            String pem = Files.readString(Path.of(opt("key", "")));
            byte[] der = Base64.getMimeDecoder().decode(
                    pem.replaceAll("-----[A-Z ]+-----", ""));
            String algorithm = chain[0].getPublicKey().getAlgorithm();
            PrivateKey key = KeyFactory.getInstance(algorithm)
                    .generatePrivate(new PKCS8EncodedKeySpec(der));
            keys.setKeyEntry("me", key, new char[0], chain);
        }
        kmf.init(keys, new char[0]);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }

    static void run(SSLSocket sock, Socket raw, String scenario, boolean server)
            throws Exception {
        sock.startHandshake();
        report("version", sock.getSession().getProtocol().replace("TLSv", ""));
        report("alpn", sock.getApplicationProtocol());
        InputStream in = sock.getInputStream();
        OutputStream out = sock.getOutputStream();
        switch (scenario) {
            case "handshake", "mtls", "mtls_refused" -> pingPong(sock, in, out, server);
            case "duplex" -> duplex(sock, in, out, Integer.parseInt(opt("size", "4194304")), 0);
            case "keyupdate" -> duplex(sock, in, out, Integer.parseInt(opt("size", "1048576")),
                    Integer.parseInt(opt("updates", "1")));
            case "renegotiate" -> duplex(sock, in, out, Integer.parseInt(opt("size", "1048576")), 1);
            case "close", "ragged" -> {
                out.write("bye\n".getBytes(StandardCharsets.US_ASCII));
                out.flush();
                if (scenario.equals("close")) {
                    sock.close();
                } else {
                    raw.close();
                }
            }
            case "halfclose_peer" -> {
                byte[] data = new byte[65536];
                for (int i = 0; i < data.length; i++) {
                    data[i] = pattern(i);
                }
                out.write(data);
                out.flush();
                sock.shutdownOutput();
                report("got", new String(readEOF(in), StandardCharsets.US_ASCII).trim());
            }
            case "halfclose_local" -> {
                byte[] data = readEOF(in);
                boolean intact = true;
                for (int i = 0; i < data.length; i++) {
                    intact &= data[i] == pattern(i);
                }
                report("received", data.length);
                report("intact", intact);
                out.write(("got " + data.length + "\n").getBytes(StandardCharsets.US_ASCII));
                out.flush();
                sock.close();
            }
            case "resume" -> {
                // The server speaks first, so a TLS 1.3 ticket is on the wire before the
                // greeting whatever the server's ticket policy.
                if (server) {
                    out.write("hello\n".getBytes(StandardCharsets.US_ASCII));
                    out.flush();
                    readEOF(in);
                } else {
                    in.readNBytes(6);
                    sock.close();
                }
            }
            default -> throw new IllegalArgumentException("unknown scenario " + scenario);
        }
    }

    static byte[] readEOF(InputStream in) throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        byte[] buf = new byte[65536];
        try {
            for (int n; (n = in.read(buf)) >= 0; ) {
                all.write(buf, 0, n);
            }
        } catch (IOException exc) {
            report("eof", "error: " + exc);
            throw exc;
        }
        report("eof", "clean");
        return all.toByteArray();
    }

    static void pingPong(SSLSocket sock, InputStream in, OutputStream out, boolean server)
            throws IOException {
        byte[] got;
        if (server) {
            got = in.readNBytes(5);
            out.write("pong\n".getBytes(StandardCharsets.US_ASCII));
        } else {
            out.write("ping\n".getBytes(StandardCharsets.US_ASCII));
            out.flush();
            got = in.readNBytes(5);
        }
        out.flush();
        report("got", new String(got, StandardCharsets.US_ASCII).trim());
        // The test's side closes first and cleanly; say whether its close_notify arrived.
        readEOF(in);
        sock.close();
    }

    // Both ways at once; with `updates`, the writer starts that many handshakes
    // (KeyUpdate under TLS 1.3, renegotiation under 1.2) spread over the middle.
    static void duplex(SSLSocket sock, InputStream in, OutputStream out, int total,
            int updates) throws Exception {
        Exception[] failure = new Exception[1];
        Thread writer = new Thread(() -> {
            try {
                byte[] data = new byte[total];
                for (int i = 0; i < total; i++) {
                    data[i] = pattern(i);
                }
                int half = total / 2;
                int step = updates > 0 ? Math.max(1, half / updates) : half;
                int offset = 0;
                out.write(data, 0, total / 4);
                offset = total / 4;
                for (int u = 0; u < updates; u++) {
                    sock.startHandshake();
                    int n = Math.min(step, total - offset);
                    out.write(data, offset, n);
                    offset += n;
                }
                out.write(data, offset, total - offset);
                out.flush();
                report("updates", updates);
            } catch (Exception exc) {
                failure[0] = exc;
            }
        });
        writer.start();
        long received = 0;
        long mismatch = -1;
        byte[] buf = new byte[65536];
        while (received < total) {
            int n = in.read(buf);
            if (n < 0) {
                break;
            }
            for (int i = 0; i < n; i++) {
                if (mismatch < 0 && buf[i] != pattern(received + i)) {
                    mismatch = received + i;
                }
            }
            received += n;
        }
        writer.join(DEADLINE_MS);
        report("received", received);
        report("mismatch", mismatch);
        if (failure[0] != null) {
            throw failure[0];
        }
        if (received < total) {
            throw new IOException("end of stream after " + received + " bytes");
        }
        sock.close();
    }
}
