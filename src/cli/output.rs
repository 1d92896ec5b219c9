//! Tables on a terminal: each column as wide as its widest cell, numbers to the right, text
//! to the left, so that long kind or queue names push their column out instead of the rows.

use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, Align)]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines; the last column is not padded.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
                    .max(h.len())
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let (w, align) = (widths[i], self.headers[i].1);
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                match align {
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(cell);
                    }
                    Align::Left if i == last => out.push_str(cell),
                    Align::Left => {
                        out.push_str(cell);
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.trim_end().to_string()
        };
        let mut out = vec![line(self.headers.iter().map(|(h, _)| *h).collect())];
        for r in &self.rows {
            out.push(line(r.iter().map(String::as_str).collect()));
        }
        out.join("\n") + "\n"
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `/v1/status` for a reader.
pub fn status(v: &Value) -> String {
    let mut out = format!(
        "state: {} (since {})  in flight: {}  version: {}\n",
        cell(&v["state"]),
        cell(&v["since"]),
        cell(&v["in_flight"]),
        cell(&v["version"])
    );
    if let Some(d) = v["drain"].as_object() {
        let by = match d.get("origin").and_then(Value::as_str) {
            Some("api") => "the control port or the CLI (`memwarden resume` undoes it)",
            Some("quiet") => "SIGTSTP (`memwarden resume` undoes it)",
            Some("stop") => "a stop signal (the process exits once drained)",
            _ => "an unknown source",
        };
        let reason = d
            .get("reason")
            .and_then(Value::as_str)
            .map(|r| format!("\"{r}\""))
            .unwrap_or_else(|| "no reason given".into());
        out.push_str(&format!(
            "drain: requested at {} by {by}; {reason}\n",
            d.get("requested_at").map(cell).unwrap_or_default()
        ));
    }
    if let Some(vector) = v["vector"].as_object() {
        let indexes: Vec<String> = vector
            .get("indexes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| match i["indexed_as"].as_str() {
                Some(t) => format!("{} dims ({t})", cell(&i["dims"])),
                None => format!("{} dims (no index: exact)", cell(&i["dims"])),
            })
            .collect();
        let version = match vector.get("pgvector_version").and_then(Value::as_str) {
            Some(v) if vector.get("backend").and_then(Value::as_str) == Some("pgvector") => {
                format!(" {v}")
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "vectors: {}{version} ({}){}\n",
            vector.get("backend").map(cell).unwrap_or_default(),
            vector.get("reason").map(cell).unwrap_or_default(),
            if indexes.is_empty() {
                String::new()
            } else {
                format!("; HNSW: {}", indexes.join(", "))
            }
        ));
    }
    let mut t = Table::new(&[
        ("queue", Align::Left),
        ("available", Align::Right),
        ("scheduled", Align::Right),
        ("running", Align::Right),
        ("retryable", Align::Right),
        ("failed", Align::Right),
        ("oldest_s", Align::Right),
        ("paused", Align::Right),
        ("concurrency", Align::Right),
    ]);
    for q in v["queues"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&q["name"]),
            cell(&q["available"]),
            cell(&q["scheduled"]),
            cell(&q["running"]),
            cell(&q["retryable"]),
            cell(&q["failed"]),
            format!("{:.1}", q["oldest_available_age_s"].as_f64().unwrap_or(0.0)),
            if q["paused"] == true { "yes" } else { "no" }.into(),
            cell(&q["concurrency"]),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `GET /v1/jobs` as a table.
pub fn jobs(v: &Value) -> String {
    let mut t = Table::new(&[
        ("id", Align::Left),
        ("kind", Align::Left),
        ("queue", Align::Left),
        ("status", Align::Left),
        ("attempt", Align::Right),
        ("last_error", Align::Left),
    ]);
    for j in v["jobs"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&j["id"]),
            cell(&j["kind"]),
            cell(&j["queue"]),
            cell(&j["status"]),
            format!("{}/{}", cell(&j["attempt"]), cell(&j["max_attempts"])),
            j["last_error"].as_str().unwrap_or("").into(),
        ]);
    }
    t.render() + &more(v)
}

/// `GET /v1/memories` as a table.
pub fn memories(v: &Value) -> String {
    let mut t = Table::new(&[
        ("id", Align::Left),
        ("owner", Align::Left),
        ("type", Align::Left),
        ("enrichment", Align::Left),
        ("created_at", Align::Left),
        ("content", Align::Left),
    ]);
    for m in v["memories"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&m["id"]),
            cell(&m["owner_id"]),
            cell(&m["memory_type"]),
            cell(&m["enrichment"]),
            cell(&m["created_at"]),
            cell(&m["preview"]).replace('\n', " "),
        ]);
    }
    t.render() + &more(v)
}

fn more(v: &Value) -> String {
    match v["next_cursor"].as_str() {
        Some(next) => format!("more: --cursor {next}\n"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers_whatever_the_width() {
        let v = serde_json::json!({"jobs": [
            {"id": "a", "kind": "enrichment-catchup-with-a-long-name", "queue": "default", "status": "succeeded", "attempt": 1, "max_attempts": 25, "last_error": null},
            {"id": "b", "kind": "sync", "queue": "q", "status": "failed", "attempt": 10, "max_attempts": 5, "last_error": "boom"},
        ]});
        let text = jobs(&v);
        let lines: Vec<&str> = text.lines().collect();
        let col = |line: &str, word: &str| line.find(word).unwrap();
        assert_eq!(col(lines[0], "queue"), col(lines[1], "default"));
        assert_eq!(col(lines[0], "queue"), col(lines[2], " q ") + 1);
        assert_eq!(col(lines[0], "status"), col(lines[1], "succeeded"));
        // Right-aligned numbers end where their header ends.
        let end = col(lines[0], "attempt") + "attempt".len();
        assert_eq!(col(lines[1], "1/25") + 4, end);
        assert_eq!(col(lines[2], "10/5") + 4, end);
    }

    #[test]
    fn a_drain_says_who_asked_and_why() {
        let v = serde_json::json!({"state": "QUIESCED", "since": "t", "in_flight": 0, "version": "0",
            "drain": {"reason": null, "requested_at": "2026-12-02T00:00:00Z", "origin": "api"}, "queues": []});
        let text = status(&v);
        assert!(
            text.contains(
                "drain: requested at 2026-12-02T00:00:00Z by the control port or the CLI"
            ),
            "{text}"
        );
        assert!(text.contains("no reason given"), "{text}");
    }
}
