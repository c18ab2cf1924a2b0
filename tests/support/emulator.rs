//! The AWS Lambda Runtime Interface Emulator (from the `aws-sam-cli` wheel) running the built
//! `bootstrap` directly, without Docker, with its output captured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, repo};

/// The emulator binary for this machine's architecture.
pub fn rie() -> PathBuf {
    let arch = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "x86_64"
    };
    let venv = std::env::var_os("CAS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join(format!("site-packages/samcli/local/rapid/aws-lambda-rie-{arch}"))
        })
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "aws-lambda-rie-{arch} not found under {}: run ./scripts/test.sh",
            lib.display()
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

pub struct Emulator {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

impl Emulator {
    /// Starts `bootstrap` under the emulator with `env` (and nothing else of this process's
    /// AWS settings) and waits until it accepts invocations.
    pub fn start(bootstrap: &str, env: &[(&str, &str)]) -> Emulator {
        use std::os::unix::process::CommandExt;
        let (port, runtime_port) = (free_port(), free_port());
        // The emulator expects to be alone in a container: when it resets the runtime (after a
        // function error or timeout) it kills every process it can see. A PID namespace of its
        // own keeps that to the emulator and the function.
        let mut command = Command::new("unshare");
        if !is_root() {
            command.args(["--user", "--map-root-user"]);
        }
        command
            .args(["--pid", "--fork", "--kill-child"])
            .arg(rie())
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime_port}"))
            .arg(bootstrap)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the Lambda Runtime Interface Emulator");
        let output = Arc::new(Mutex::new(String::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in streams {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = sink.lock().expect("output lock");
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Emulator { child, port, output }
    }

    /// Invokes the function once; returns the function's result as the emulator reports it.
    pub fn invoke(&self, event: &serde_json::Value) -> String {
        let body = serde_json::to_vec(event).expect("event");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the emulator");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        write!(
            stream,
            "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .expect("write request");
        stream.write_all(&body).expect("write body");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or(response)
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // `unshare --kill-child` takes the emulator, and with it its PID namespace, along.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
