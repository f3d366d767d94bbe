//! `e2e-net`: the small network tools the end-to-end tests run inside
//! namespaces, so they need nothing beyond iproute2, nftables and ping.
//!
//! ```text
//! e2e-net http-get HOST:PORT PATH              GET over HTTP/1.0; body on stdout; exit 1 unless 2xx
//! e2e-net tcp-sink BIND SECONDS                accept one connection, read to EOF; print bytes and sha256
//! e2e-net tcp-source ADDR BYTES SECONDS        connect (retrying), send BYTES pseudo-random bytes; print bytes and sha256
//! e2e-net udp-echo SECONDS BIND...             answer each datagram with the sender's address as seen here
//! e2e-net udp-ask SECONDS TARGET...            from one socket, ask each target; print "TARGET SEEN-AS" lines
//! e2e-net http METHOD HOST:PORT PATH [FILE]     any request (body from FILE); print the status line, then the body
//! e2e-net dns SERVER NAME A|AAAA                one DNS query; print "rcode N" then one address per line
//! e2e-net http-serve BIND SECONDS FILE          answer every request with FILE (HTTP/1.0, Content-Length)
//! ```
//!
//! Every command is bounded in time (SECONDS) and in size, and talks only
//! to the addresses it is given, which the tests pick inside their own
//! namespaces. Exit status 0 means success, 1 failure (reason on stderr),
//! 2 a usage error.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The most a sink accepts or a source sends: 1 GiB.
const MAX_BYTES: u64 = 1 << 30;

/// The most datagrams an echo server answers.
const MAX_DATAGRAMS: u32 = 10_000;

/// The most seconds any command runs.
const MAX_SECONDS: u64 = 600;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["http-get", addr, path] => http_get(addr, path),
        ["tcp-sink", bind, secs] => tcp_sink(bind, secs),
        ["tcp-source", addr, bytes, secs] => tcp_source(addr, bytes, secs),
        ["udp-echo", secs, binds @ ..] if !binds.is_empty() => udp_echo(secs, binds),
        ["udp-ask", secs, targets @ ..] if !targets.is_empty() => udp_ask(secs, targets),
        ["http", method, addr, path] => http(method, addr, path, None),
        ["http", method, addr, path, file] => http(method, addr, path, Some(file)),
        ["dns", server, name, qtype] => dns(server, name, qtype),
        ["http-serve", bind, secs, file] => http_serve(bind, secs, file),
        _ => {
            eprintln!(
                "usage: e2e-net http-get|tcp-sink|tcp-source|udp-echo|udp-ask|http|dns|http-serve ... (see the source's docs)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-net: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| format!("bad {what} {text:?}"))
}

fn seconds(text: &str) -> Result<Duration> {
    let secs: u64 = parse("seconds", text)?;
    Ok(Duration::from_secs(secs.clamp(1, MAX_SECONDS)))
}

/// GET `path` from `addr` with HTTP/1.0 (the server closes after the
/// answer); prints the body (chunked encoding decoded).
fn http_get(addr: &str, path: &str) -> Result<()> {
    let (status_line, body) = request("GET", addr, path, &[])?;
    std::io::stdout().write_all(&body).map_err(|e| e.to_string())?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP status {status_line:?}"))
    }
}

/// Sends one HTTP/1.0 request with `method` (and the bytes of `file` as
/// the body) and prints the status line, then the body. Exit 0 whenever an
/// answer came, whatever its status: the tests check error statuses too.
fn http(method: &str, addr: &str, path: &str, file: Option<&str>) -> Result<()> {
    let body = match file {
        Some(f) => std::fs::read(f).map_err(|e| format!("read {f}: {e}"))?,
        None => Vec::new(),
    };
    let (status_line, answer) = request(method, addr, path, &body)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{status_line}").map_err(|e| e.to_string())?;
    out.write_all(&answer).map_err(|e| e.to_string())
}

/// One HTTP/1.0 request (the server closes after the answer): the status
/// line and the body (chunked encoding decoded).
fn request(method: &str, addr: &str, path: &str, body: &[u8]) -> Result<(String, Vec<u8>)> {
    let addr: SocketAddr = parse("address", addr)?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    // A server may answer (413) before reading a large body and close:
    // a failed body write still leaves its answer to read.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    stream
        .take(16 << 20)
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut body = answer[split + 4..].to_vec();
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((head.lines().next().unwrap_or_default().to_owned(), body))
}

/// Serves `file` (read once, at most [`MAX_BYTES`]) to every request on
/// `bind` until `secs` pass: one thread per connection, which reads the
/// request head, writes a 200 with the file and closes.
fn http_serve(bind: &str, secs: &str, file: &str) -> Result<()> {
    let until = Instant::now() + seconds(secs)?;
    let body = std::fs::read(file).map_err(|e| format!("read {file}: {e}"))?;
    if body.len() as u64 > MAX_BYTES {
        return Err(format!("{file} is larger than {MAX_BYTES} bytes"));
    }
    let body: &'static [u8] = Box::leak(body.into_boxed_slice());
    let bind: SocketAddr = parse("address", bind)?;
    let listener = TcpListener::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    eprintln!("serving {} bytes on {bind}", body.len());
    while Instant::now() < until {
        match listener.accept() {
            Ok((mut stream, _)) => {
                thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
    Ok(())
}

/// Sends one DNS query for `name` to `server` (port 53 unless given) and
/// prints `rcode N`, then the address of each A/AAAA answer.
fn dns(server: &str, name: &str, qtype: &str) -> Result<()> {
    let server: SocketAddr = match server.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(parse("server address", server)?, 53),
    };
    let qtype: u16 = match qtype {
        "A" => 1,
        "AAAA" => 28,
        other => return Err(format!("query type {other:?}: A or AAAA")),
    };
    let mut q = vec![0x4b, 0x41, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(u8::try_from(label.len()).map_err(|_| "label too long")?);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    let bind = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&q, server).map_err(|e| format!("send: {e}"))?;
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let r = &buf[..n];
        if n < q.len() || r[0..2] != q[0..2] {
            continue;
        }
        let mut out = format!("rcode {}\n", r[3] & 0x0f);
        let count = u16::from_be_bytes([r[6], r[7]]);
        let mut at = q.len();
        for _ in 0..count {
            // Answers name the question by a 2-byte pointer.
            let head = r.get(at..at + 12).ok_or("truncated answer")?;
            let len = usize::from(u16::from_be_bytes([head[10], head[11]]));
            let data = r.get(at + 12..at + 12 + len).ok_or("truncated answer")?;
            match len {
                4 => out += &format!("{}\n", std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3])),
                16 => {
                    let octets: [u8; 16] = data.try_into().map_err(|_| "bad AAAA")?;
                    out += &format!("{}\n", std::net::Ipv6Addr::from(octets));
                }
                _ => {}
            }
            at += 12 + len;
        }
        print!("{out}");
        return Ok(());
    }
    Err(format!("no answer from {server} in 3 s"))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk header")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The deterministic byte stream a source sends (xorshift64*).
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn report(bytes: u64, hash: Sha256, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "bytes={bytes} sha256={hex} secs={secs:.3} mbit_s={:.1}",
        bytes as f64 * 8.0 / secs / 1e6
    );
}

fn tcp_sink(bind: &str, secs: &str) -> Result<()> {
    let limit = seconds(secs)?;
    let started = Instant::now();
    let listener = TcpListener::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    eprintln!("listening on {bind}");
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, from)) => {
                eprintln!("connection from {from}");
                break stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && started.elapsed() < limit => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let receiving = Instant::now();
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!("time limit reached after {total} bytes"));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("read after {total} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_BYTES {
            return Err("more than the byte limit".into());
        }
        hash.update(&buf[..n]);
    }
    // Closing tells the source everything arrived.
    let _ = stream.shutdown(Shutdown::Both);
    report(total, hash, receiving);
    Ok(())
}

fn tcp_source(addr: &str, bytes: &str, secs: &str) -> Result<()> {
    let addr: SocketAddr = parse("address", addr)?;
    let bytes: u64 = parse("byte count", bytes)?;
    if bytes > MAX_BYTES {
        return Err("more than the byte limit".into());
    }
    let limit = seconds(secs)?;
    let started = Instant::now();
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => break stream,
            Err(e) if started.elapsed() < limit => {
                eprintln!("connect {addr}: {e}; retrying");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    let sending = Instant::now();
    let left = limit.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    stream.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    while sent < bytes {
        if started.elapsed() >= limit {
            return Err(format!("time limit reached after {sent} bytes"));
        }
        let n = (bytes - sent).min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("write after {sent} bytes: {e}"))?;
        hash.update(&buf[..n]);
        sent += n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    // Wait for the sink to close: then it has read everything.
    let mut rest = [0u8; 64];
    let _ = stream.read(&mut rest);
    report(sent, hash, sending);
    Ok(())
}

fn udp_echo(secs: &str, binds: &[&str]) -> Result<()> {
    let limit = seconds(secs)?;
    let mut workers = Vec::new();
    for bind in binds {
        let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        eprintln!("echoing on {bind}");
        workers.push(thread::spawn(move || {
            let started = Instant::now();
            let mut buf = [0u8; 1500];
            let mut answered = 0;
            while started.elapsed() < limit && answered < MAX_DATAGRAMS {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(from.to_string().as_bytes(), from);
                    answered += 1;
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn udp_ask(secs: &str, targets: &[&str]) -> Result<()> {
    let limit = seconds(secs)?;
    let started = Instant::now();
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    for target in targets {
        let target: SocketAddr = parse("address", target)?;
        let seen = loop {
            if started.elapsed() >= limit {
                return Err(format!("no answer from {target}"));
            }
            socket
                .send_to(b"ask", target)
                .map_err(|e| format!("send to {target}: {e}"))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == target => break String::from_utf8_lossy(&buf[..n]).into_owned(),
                _ => continue,
            }
        };
        println!("{target} {seen}");
    }
    Ok(())
}
