//! A tiny northbound (REST) endpoint of a simulated node, on loopback: answers every request
//! from the node's current state. In MAINTENANCE it answers 503 "unavailable temporarily" (seed:
//! "Only REST requests receive response that ESC is unavailable temporarily"); with services
//! stopped 503 as well; on the HA BACKUP 503 (the standby serves no northbound); otherwise 200.
//! The JSON bodies are assumptions. Each request is journaled.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{Context, Result};

use crate::formats;
use crate::model::{Mode, Role};
use crate::store::{SimRoot, What};

/// Serves forever on `listener`.
pub fn serve(root: SimRoot, node: String, listener: TcpListener) -> Result<()> {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let root = root.clone();
        let node = node.clone();
        std::thread::spawn(move || {
            let _ = handle(&root, &node, conn);
        });
    }
    Ok(())
}

/// (status, body) for the node's current state.
pub fn respond(root: &SimRoot, node: &str) -> Result<(u16, serde_json::Value)> {
    let st = root.load_node(node)?;
    let base = serde_json::json!({
        "node": node,
        "mode": st.mode.as_str(),
        "role": st.role.as_str(),
        "monitoring": st.monitoring(),
        "esc_version": st.esc_version,
    });
    let (status, message) = if st.all_stopped() {
        (503, formats::NB_STOPPED)
    } else if st.mode == Mode::Maintenance {
        (503, formats::NB_UNAVAILABLE)
    } else if st.role == Role::Backup {
        (503, "ESC standby node: northbound is served by the MASTER")
    } else {
        (200, "OK")
    };
    let mut body = base;
    body["status"] = serde_json::json!(if status == 200 {
        "ok"
    } else {
        "unavailable temporarily"
    });
    body["message"] = serde_json::json!(message);
    Ok((status, body))
}

fn handle(root: &SimRoot, node: &str, mut conn: TcpStream) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request).context("read request")?;
    if request.trim().is_empty() {
        // A connect without a request (a readiness probe): nothing to answer or journal.
        return Ok(());
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let (status, body) = respond(root, node)?;
    {
        let lock = root.lock()?;
        root.append_journal(
            &lock,
            node,
            What::Northbound {
                method: method.clone(),
                path: path.clone(),
                status,
            },
        )?;
    }
    let body = serde_json::to_string(&body)?;
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 503 {
        resp.push_str("Retry-After: 30\r\n");
    }
    resp.push_str("\r\n");
    resp.push_str(&body);
    conn.write_all(resp.as_bytes())?;
    Ok(())
}
