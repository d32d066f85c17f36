//! Syntax of the names an app uses: DNS labels, port names, image references, environment
//! variable names, Linux capabilities, file names inside an app directory.

/// A candidate close enough to a typo to suggest it.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 1.max(c.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions (`prot`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Why `s` is not an RFC 1035 label (what Kubernetes requires of Service names), if it is not.
pub fn dns1035(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 63 {
        return Some(format!("is {} characters long (at most 63)", s.len()));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    if s.ends_with('-') {
        return Some("must not end with `-`".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "holds `{c}`: only lowercase letters, digits and `-` are allowed"
        ));
    }
    None
}

/// Why `s` is not an RFC 1123 label (namespaces, volume names), if it is not.
pub fn dns1123(s: &str) -> Option<String> {
    match s.strip_prefix(|c: char| c.is_ascii_digit()) {
        // A leading digit is what RFC 1123 allows beyond RFC 1035.
        Some(rest) if !rest.is_empty() => dns1035(&format!("a{rest}")),
        Some(_) => None,
        None => dns1035(s),
    }
}

/// Why `s` is not an IANA service name (what Kubernetes requires of port names), if it is not.
pub fn port_name(s: &str) -> Option<String> {
    if s.len() > 15 {
        return Some(format!("is {} characters long (at most 15)", s.len()));
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some("must hold a letter".into());
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Some("must not start or end with `-` or hold `--`".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "holds `{c}`: only lowercase letters, digits and `-` are allowed"
        ));
    }
    None
}

/// Why `s` is not a C identifier usable as an environment variable name, if it is not.
pub fn env_name(s: &str) -> Option<String> {
    let ok_start = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!(ok_start && ok_rest)).then(|| {
        "is not a variable name: letters, digits and `_`, not starting with a digit".into()
    })
}

/// Why `s` is not a container image reference (`[host[:port]/]path[:tag][@digest]`), if not.
pub fn image_ref(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 255 + 128 + 72 {
        return Some("is too long".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return Some(format!("digest `{d}` must be `algorithm:hex`"));
        };
        let alg_ok = !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
        if !alg_ok || !hex_ok {
            return Some(format!(
                "digest `{d}` must be `algorithm:hex` with at least 32 hex digits"
            ));
        }
    }
    // A tag follows the last `:` that comes after the last `/` (a registry port comes before).
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Some(format!(
                "tag `{tag}` must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            ));
        }
    }
    if name.len() > 255 {
        return Some("name is longer than 255 characters".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && looks_like_host(parts[0]) {
        let host = parts.remove(0);
        if let Some(why) = registry_host(host) {
            return Some(why);
        }
    }
    for part in parts {
        if let Some(why) = path_component(part) {
            return Some(why);
        }
    }
    None
}

fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost" || s.chars().any(|c| c.is_uppercase())
}

fn registry_host(s: &str) -> Option<String> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Some(format!("registry `{s}` has a bad port `{port}`"));
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (!ok).then(|| format!("registry `{s}` is not a host name"))
}

fn path_component(s: &str) -> Option<String> {
    let bad = || {
        Some(format!(
            "`{s}` is not a valid repository path component: lowercase letters and digits, \
             separated by `.`, `_`, `__` or `-`"
        ))
    };
    if s.is_empty() {
        return bad();
    }
    let chars: Vec<char> = s.chars().collect();
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(chars[0]) || !alnum(chars[chars.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < chars.len() {
        if alnum(chars[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < chars.len() && !alnum(chars[i]) {
            i += 1;
        }
        let sep: String = chars[start..i].iter().collect();
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return bad();
        }
    }
    None
}

/// Linux capabilities (capabilities(7), as of Linux 6.x), without the `CAP_` prefix the
/// Kubernetes API leaves out.
pub const CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Why `s` is not a Linux capability name as Kubernetes spells it, if it is not.
pub fn capability(s: &str) -> Option<String> {
    if CAPABILITIES.contains(&s) {
        return None;
    }
    if let Some(bare) = s.strip_prefix("CAP_")
        && CAPABILITIES.contains(&bare)
    {
        return Some(format!(
            "write `{bare}`: Kubernetes leaves out the `CAP_` prefix"
        ));
    }
    let upper = s.to_ascii_uppercase();
    if CAPABILITIES.contains(&upper.as_str()) {
        return Some(format!("write `{upper}` in capitals"));
    }
    let hint = suggest(&upper, CAPABILITIES)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
    Some(format!("`{s}` is not a Linux capability{hint}"))
}

/// Why `s` is not a plain relative path inside an app directory, if it is not.
pub fn app_file(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.starts_with('/') {
        return Some(format!("`{s}` must be relative to the app directory"));
    }
    if s.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
        return Some(format!(
            "`{s}` must stay inside the app directory (no `.`, `..` or empty components)"
        ));
    }
    None
}

/// The last component of a relative path.
pub fn base_name(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Why `s` is not a ConfigMap/Secret data key, if it is not.
pub fn data_key(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    (!ok).then(|| format!("`{s}` is not a valid key: letters, digits, `-`, `_` and `.`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_matches_only() {
        assert_eq!(
            suggest("wrker", ["master", "worker", "jupyter"]),
            Some("worker")
        );
        assert_eq!(suggest("zzz", ["master", "worker"]), None);
        assert_eq!(suggest("worker", ["worker"]), None);
    }

    #[test]
    fn dns_labels() {
        assert_eq!(dns1035("worker"), None);
        assert_eq!(dns1035("w-1"), None);
        assert!(dns1035("1w").is_some());
        assert!(dns1035("Worker").is_some());
        assert!(dns1035("w_1").is_some());
        assert!(dns1035("w-").is_some());
        assert!(dns1035(&"a".repeat(64)).is_some());
    }

    #[test]
    fn port_names() {
        assert_eq!(port_name("http-master-ui"), None);
        assert!(port_name("http-master-uis1").is_some());
        assert!(port_name("tcp--x").is_some());
        assert!(port_name("8080").is_some());
    }

    #[test]
    fn image_references() {
        for ok in [
            "localhost/director-boot/spark:4.0.1",
            "docker.io/library/busybox:1.35",
            "busybox",
            "registry.k8s.io/pause:3.10",
            "localhost:5000/a/b_c__d-e:v1",
            "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(image_ref(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Spark:1",
            "spark:",
            "spark:-1",
            "spark::1",
            "a//b",
            "localhost:99999/x",
            "x@sha256:xyz",
            "a/-b",
        ] {
            assert!(image_ref(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn capabilities() {
        assert_eq!(capability("SYS_NICE"), None);
        assert_eq!(
            capability("CAP_SYS_NICE").unwrap(),
            "write `SYS_NICE`: Kubernetes leaves out the `CAP_` prefix"
        );
        assert_eq!(
            capability("SYS_NIC").unwrap(),
            "`SYS_NIC` is not a Linux capability (did you mean `SYS_NICE`?)"
        );
    }

    #[test]
    fn app_files() {
        assert_eq!(app_file("hooks/delnodes.sh"), None);
        assert!(app_file("../x").is_some());
        assert!(app_file("/etc/passwd").is_some());
        assert!(app_file("a//b").is_some());
    }
}
