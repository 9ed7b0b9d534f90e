//! Synchronised delivery: what the gate holds back stays held until it is released, and a race
//! released that way reaches the database through `serve`.

mod common;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use booking_cli::sync::http1::{self, Held};
use common::{Cli, ServeProcess, json, text};
use hyper::http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server sees every byte of the request but the last, and the last only when released.
#[tokio::test]
async fn last_byte_holds_exactly_one_byte_until_the_release() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bytes = http1::encode(
        &Method::POST,
        "/v1/orders",
        &format!("127.0.0.1:{port}"),
        &[],
        br#"{"sku": 42}"#,
    );
    let total = bytes.len();
    let client = tokio::spawn(async move {
        Held::pre_send("127.0.0.1", port, None, bytes, 1, Duration::from_secs(5))
            .await
            .expect("pre-sent")
    });
    let (mut server, _) = listener.accept().await.unwrap();
    let mut held = client.await.unwrap();

    let mut seen = vec![0u8; total];
    server.read_exact(&mut seen[..total - 1]).await.unwrap();
    // Nothing more comes while the gate is shut.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut one = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(50), server.read(&mut one))
            .await
            .is_err(),
        "the final byte left before its release"
    );
    held.release().await.unwrap();
    server.read_exact(&mut one).await.unwrap();
    assert_eq!(one[0], b'}', "the held byte is the body's last");
}

/// `serve --mode naive --hold-ms 0`: no artificial window, only the gap between the check and
/// the write. Released by last-byte, the burst still overbooks, and `serve`'s
/// `Server-Timing: arrival` gives the spread at the server.
#[test]
fn race_with_last_byte_reaches_the_database_through_serve_and_reports_the_arrival_spread() {
    let cli = Cli::with_budget(common::SEEDED_POOL + 4);
    cli.reset();
    let serve = start_serve(&cli, "naive");
    let listen = serve.listen.clone();
    let out = common::serve_race(
        &cli,
        &format!("http://{listen}"),
        &[
            "--sync",
            "last-byte",
            "--repeat",
            "10",
            "--expect",
            "violated",
            "--json",
        ],
    )
    .output()
    .expect("race runs");
    drop(serve);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    eprintln!("last-byte, serve naive hold 0: {}", body["verdict_counts"]);
    assert_eq!(body["sync"], "last-byte");
    assert_eq!(body["verdict"], "VIOLATED", "{body}");
    let arrival = &body["arrival_spread"];
    assert_eq!(
        arrival["count"], 20,
        "every answer said when it arrived: {body}"
    );
    assert!(arrival["max_us"].as_u64().is_some(), "{body}");
    eprintln!(
        "arrival spread {} µs, release spread {} µs",
        arrival["max_us"], body["release_spread"]["max_us"]
    );
    // Every 201 is a row: the run is accounted for even while it oversells.
    for run in body["runs"].as_array().expect("runs") {
        assert_eq!(run["counted"], run["successes"], "{run}");
    }
}

#[test]
fn a_sync_the_request_cannot_have_is_one_line_and_exit_2() {
    let cli = Cli::with_budget(0);
    for (args, says) in [
        (
            vec!["--sync", "last-byte", "-X", "GET"],
            "--sync last-byte needs a request body",
        ),
        (
            vec!["--sync", "single-packet", "-d", "{}"],
            "--sync single-packet needs HTTP/2: add --http2",
        ),
        (
            vec!["-d", "{}", "-H", "Content-Length: 3"],
            "race sets it itself",
        ),
    ] {
        let mut all = vec![
            "race",
            "--url",
            "http://127.0.0.1:9/x",
            "--max-successes",
            "1",
        ];
        all.extend(args);
        let out = cli.run(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

/// `serve --mode MODE --hold-ms 0` on a free port, killed when dropped.
fn start_serve(cli: &Cli, mode: &str) -> ServeProcess {
    ServeProcess::start(cli, &["--mode", mode, "--hold-ms", "0"])
}

/// What a relay read from the client: per connection, each read in order.
type Reads = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// A loopback relay in front of `upstream` that keeps every read it makes from the client.
async fn relay(upstream: String) -> (String, Reads) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let reads: Reads = Arc::default();
    let kept = Arc::clone(&reads);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut connection = Vec::new();
                let mut buffer = vec![0u8; 65536];
                loop {
                    match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            connection.push(buffer[..n].to_vec());
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                // Each connection's reads apart: the probe's and the burst's.
                kept.lock().unwrap().push(connection);
            });
        }
    });
    (address, reads)
}

/// The read (by index) in which each DATA frame with END_STREAM of an HTTP/2 connection ended.
fn final_frames(reads: &[Vec<u8>]) -> Vec<usize> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut bytes = Vec::new();
    let mut owner = Vec::new();
    for (i, read) in reads.iter().enumerate() {
        bytes.extend_from_slice(read);
        owner.extend(std::iter::repeat_n(i, read.len()));
    }
    let Some(start) = bytes.windows(PREFACE.len()).position(|w| w == PREFACE) else {
        return Vec::new();
    };
    let mut at = start + PREFACE.len();
    let mut finals = Vec::new();
    while at + 9 <= bytes.len() {
        let length = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
        let end = at + 9 + length;
        if end > bytes.len() {
            break;
        }
        if kind == 0 && flags & 0x1 == 0x1 {
            finals.push(owner[end - 1]);
        }
        at = end;
    }
    finals
}

/// The single-packet release is one write: a relay between `race` and `serve` reads every
/// stream's final DATA frame in one read, after `serve` (HTTP/2 with prior knowledge) booked
/// through it and the verdict came from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_packet_releases_every_final_frame_in_one_write_and_reaches_the_database() {
    let cli = Cli::with_budget(common::SEEDED_POOL + 4);
    tokio::task::block_in_place(|| cli.reset());
    let serve = tokio::task::block_in_place(|| start_serve(&cli, "naive"));
    let (through, reads) = relay(serve.listen.clone()).await;
    let mut command = common::serve_race(
        &cli,
        &format!("http://{through}"),
        &[
            "--http2",
            "--sync",
            "single-packet",
            "--expect",
            "any",
            "--json",
        ],
    );
    let out = tokio::task::spawn_blocking(move || command.output().expect("race runs"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = json(&out);
    assert_eq!(body["sync"], "single-packet", "{body}");
    assert_eq!(body["transport_errors"], 0, "{body}");
    assert_eq!(
        body["counted"], body["successes"],
        "every 201 is a row: {body}"
    );
    assert!(body["successes"].as_u64().unwrap_or(0) >= 1, "{body}");
    assert_eq!(body["arrival_spread"]["count"], 20, "{body}");
    // Give the relay a moment to see the connection close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let connections = reads.lock().unwrap().clone();
    let Some((reads, finals)) = connections
        .iter()
        .map(|reads| (reads, final_frames(reads)))
        .find(|(_, finals)| !finals.is_empty())
    else {
        panic!(
            "no connection carried a final frame: {} connection(s)",
            connections.len()
        );
    };
    assert_eq!(
        finals.len(),
        20,
        "every stream's final frame went through the relay"
    );
    assert!(
        finals.iter().all(|read| *read == finals[0]),
        "the final frames came in more than one read: {finals:?}"
    );
    eprintln!(
        "single-packet: 20 final frames in read {} of {}; arrival spread {} µs",
        finals[0],
        reads.len(),
        body["arrival_spread"]["max_us"]
    );
}

/// A server of HTTP/1.1 only: asked for single-packet by name, `race` says so and sends
/// nothing; under `auto` it falls back to last-byte and says it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_packet_against_http1_only_is_refused_and_auto_falls_back_to_last_byte() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(0u32));
    let counted = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let Ok(n) = stream.read(&mut buffer).await else {
                    return;
                };
                if n > 0 && !buffer.starts_with(b"PRI *") {
                    // Wait for the held byte: the body ends with '}'.
                    let mut seen = buffer[..n].to_vec();
                    while !seen.ends_with(b"}") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(m) => seen.extend_from_slice(&buffer[..m]),
                        }
                    }
                    *counted.lock().unwrap() += 1;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let race = move |sync: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_booking-cli"))
            .args([
                "race",
                "--url",
                &format!("http://{address}/book"),
                "--http2",
                "--sync",
                sync,
                "-d",
                "{}",
                "--users",
                "5",
                "--max-successes",
                "5",
            ])
            .output()
            .expect("runs");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let race = Arc::new(race);
    let first = Arc::clone(&race);
    let (status, _, stderr) = tokio::task::spawn_blocking(move || first("single-packet"))
        .await
        .unwrap();
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("does not speak HTTP/2"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(*requests.lock().unwrap(), 0, "nothing was sent");

    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || race("auto"))
        .await
        .unwrap();
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("falls back to last-byte"), "{stderr}");
    assert!(stdout.contains("(--sync last-byte)"), "{stdout}");
    assert_eq!(*requests.lock().unwrap(), 5);
}

/// A TLS-terminating relay in front of `upstream`, with a certificate made here for 127.0.0.1,
/// offering `h2` and `http/1.1` in ALPN: `serve` over TLS. Returns its address and the CA file.
async fn tls_front(upstream: String, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (address, ca)
}

/// `https://`: last-byte (ALPN http/1.1) and single-packet (ALPN h2) through TLS to `serve`,
/// each reaching the database, every 201 a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_byte_and_single_packet_over_tls_reach_the_database() {
    let cli = Cli::with_budget(common::SEEDED_POOL + 4);
    tokio::task::block_in_place(|| cli.reset());
    let serve = tokio::task::block_in_place(|| start_serve(&cli, "naive"));
    let dir = tempfile::tempdir().unwrap();
    let (front, ca) = tls_front(serve.listen.clone(), dir.path()).await;
    let ca = ca.display().to_string();
    for sync in ["last-byte", "single-packet"] {
        let mut command = common::serve_race(
            &cli,
            &format!("https://{front}"),
            &["--cacert", &ca, "--sync", sync, "--expect", "any", "--json"],
        );
        let out = tokio::task::spawn_blocking(move || command.output().expect("race runs"))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{sync}: {}", text(&out.stderr));
        let body = json(&out);
        assert_eq!(body["sync"], sync, "{body}");
        assert_eq!(body["transport_errors"], 0, "{sync}: {body}");
        assert_eq!(
            body["status_codes"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
            Some(20),
            "{body}"
        );
        assert!(body["successes"].as_u64().unwrap_or(0) >= 1, "{body}");
        assert_eq!(
            body["counted"], body["successes"],
            "{sync}: every 201 is a row: {body}"
        );
        assert_eq!(body["arrival_spread"]["count"], 20, "{body}");
    }
}

/// `stress --target` releases its burst as `--sync` says — each request whole, last-byte over
/// HTTP/1.1, single-packet over HTTP/2 (cleartext, and negotiated over TLS under `auto`) — and
/// `serve --mode locked` still gives the reference result every time: one 201, the rest
/// refused, one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_target_syncs_its_burst_and_the_reference_result_holds() {
    let cli = Cli::with_budget(common::SEEDED_POOL + 4);
    tokio::task::block_in_place(|| cli.reset());
    let serve = tokio::task::block_in_place(|| start_serve(&cli, "locked"));
    let dir = tempfile::tempdir().unwrap();
    let (front, ca) = tls_front(serve.listen.clone(), dir.path()).await;
    let ca = ca.display().to_string();
    let plain = format!("http://{}", serve.listen);
    let tls = format!("https://{front}");
    let cases: [(&str, &[&str], Option<&str>); 4] = [
        (&plain, &["--sync", "none"], None),
        (&plain, &["--sync", "last-byte"], Some("last-byte")),
        (&plain, &["--sync", "single-packet"], Some("single-packet")),
        (&tls, &["--cacert", &ca], Some("single-packet")),
    ];
    for (target, extra, sync) in cases {
        let mut args = vec!["stress", "--target", target, "--mode", "locked", "--json"];
        args.extend(extra);
        let out = tokio::task::block_in_place(|| cli.run(&args));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let body = json(&out);
        assert_eq!(body["sync"].as_str(), sync, "{args:?}: {body}");
        assert_eq!(body["status_codes"]["201"], 1, "{args:?}: {body}");
        assert_eq!(body["transport_errors"], 0, "{args:?}: {body}");
        assert_eq!(
            tokio::task::block_in_place(|| cli.reference_slot()),
            (1, 1, 1),
            "{args:?}"
        );
    }
    // The tables say how the burst went out, and how close together it arrived.
    let out = tokio::task::block_in_place(|| {
        cli.run(&[
            "stress",
            "--target",
            &plain,
            "--mode",
            "locked",
            "--sync",
            "last-byte",
        ])
    });
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("over HTTP to 1 server (--sync last-byte)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("arrived whole at the server within"),
        "{stdout}"
    );
    // A closed loop has no burst to release; --sync is refused before anything is sent.
    let out = tokio::task::block_in_place(|| {
        cli.run(&[
            "stress",
            "--target",
            &plain,
            "--mode",
            "locked",
            "--duration",
            "1s",
            "--sync",
            "last-byte",
        ])
    });
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--duration runs a closed loop"));
}
