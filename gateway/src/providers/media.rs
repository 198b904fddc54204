//! `data:` URL parsing for translators that need inline base64 media (Anthropic image/document sources, Gemini inlineData).

/// A base64 `data:` URL split into its media type and payload, borrowing from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataUrl<'a> {
    pub media_type: &'a str,
    pub base64: &'a str,
}

/// Parses `data:<media-type>[;params];base64,<payload>`; `None` if `url` is not a base64 data URL.
pub fn parse_data_url(url: &str) -> Option<DataUrl<'_>> {
    let rest = url.strip_prefix("data:")?;
    let (header, payload) = rest.split_once(',')?;
    let header = header.strip_suffix(";base64")?;
    let media_type = header.split(';').next().unwrap_or("");
    if media_type.is_empty() {
        return None;
    }
    Some(DataUrl {
        media_type,
        base64: payload,
    })
}

/// Whether `url` is an http(s) URL a provider could fetch itself.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// Builds a `data:` URL (Anthropic/Gemini base64 media → OpenAI `image_url`).
pub fn data_url(media_type: &str, base64: &str) -> String {
    let mut url = String::with_capacity(media_type.len() + base64.len() + 13);
    url.push_str("data:");
    url.push_str(media_type);
    url.push_str(";base64,");
    url.push_str(base64);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_parse() {
        let cases = [
            ("data:image/png;base64,iVBOR", Some(("image/png", "iVBOR"))),
            (
                "data:application/pdf;name=a.pdf;base64,JVBER",
                Some(("application/pdf", "JVBER")),
            ),
            ("data:text/plain,hello", None),
            ("https://example.com/cat.png", None),
            ("data:;base64,AAAA", None),
        ];
        for (url, expected) in cases {
            let parsed = parse_data_url(url).map(|data| (data.media_type, data.base64));
            assert_eq!(parsed, expected, "{url}");
        }
        assert_eq!(
            data_url("image/png", "iVBOR"),
            "data:image/png;base64,iVBOR"
        );
    }
}
