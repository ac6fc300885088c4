//! `{{…}}` placeholders in executor templates (`{{input.id}}` in URLs, `{{secret.NAME}}` in
//! headers): one parser, so every place that fills them agrees on the syntax.

/// A piece of a template: text as written, or the trimmed name inside `{{ }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a template; an unclosed `{{` is an error.
pub fn parse(template: &str) -> Result<Vec<Segment<'_>>, crate::CoreError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Segment::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| crate::CoreError::invalid("an unclosed `{{`"))?;
        out.push(Segment::Placeholder(after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_placeholders() {
        assert_eq!(
            parse("a/{{input.id}}?k={{ secret.K }}").expect("ok"),
            vec![
                Segment::Text("a/"),
                Segment::Placeholder("input.id"),
                Segment::Text("?k="),
                Segment::Placeholder("secret.K")
            ]
        );
        assert_eq!(parse("plain").expect("ok"), vec![Segment::Text("plain")]);
        assert!(parse("a{{b").is_err());
    }
}
