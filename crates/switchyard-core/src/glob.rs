//! Event-type patterns: exact names or globs where `*` matches any run of characters.

/// True if `pattern` contains a wildcard and therefore cannot be looked up by exact name.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains('*')
}

/// Matches `name` against `pattern` (`*` = any sequence, possibly empty). Linear in practice:
/// the classic greedy algorithm with one back-track point.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Checks a subscription pattern: an event type name with optional `*`s.
pub fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 200
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("*", "TicketCreated"));
        assert!(matches("Ticket*", "TicketCreated"));
        assert!(matches("Ticket*", "Ticket"));
        assert!(!matches("Ticket*", "ProfileCreated"));
        assert!(matches("*Created", "TicketCreated"));
        assert!(matches("Queue*In*", "QueueCallInArrived"));
        assert!(matches("TicketCreated", "TicketCreated"));
        assert!(!matches("TicketCreated", "TicketCreatedX"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("switchyard.*", "switchyard.endpoint.disabled"));
    }
}
