//! One CSV record (`--mount` and `--device` values), read as Go's `encoding/csv` reads it.
//!
//! Fields are separated by `,`. A field that starts with `"` is quoted: it runs to the next
//! lone `"`, `""` inside stands for one quote, and commas inside are literal. A quote inside an
//! unquoted field, or text after a closing quote, is an error.

pub fn fields(record: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!("extraneous or missing \" in quoted-field: {record}"));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(format!("extraneous or missing \" in quoted-field: {record}"));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return Err(format!("bare \" in non-quoted-field: {record}")),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn splits_and_unquotes() {
        assert_eq!(fields("type=cache,target=/x").unwrap(), ["type=cache", "target=/x"]);
        assert_eq!(fields("\"source=a b,c\",ro").unwrap(), ["source=a b,c", "ro"]);
        assert_eq!(fields("\"a\"\"b\"").unwrap(), ["a\"b"]);
        assert_eq!(fields("").unwrap(), [""]);
        assert_eq!(fields("a,").unwrap(), ["a", ""]);
    }

    #[test]
    fn rejects_stray_quotes() {
        assert!(fields("source=\"a b\"").is_err());
        assert!(fields("\"abc").is_err());
        assert!(fields("\"a\"b").is_err());
    }
}
