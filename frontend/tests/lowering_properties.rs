//! Parsing and lowering never panic, whatever the input, and every error they return names
//! a line of that input.

use kiln_frontend::instructions::parse_dockerfile;
use kiln_frontend::lower::{LowerOptions, OfflineResolver, lower};
use kiln_frontend::platform::Platform;
use kiln_frontend::syntax;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "WORKDIR ",
    "USER ",
    "ONBUILD ",
    "CMD ",
    "ENTRYPOINT ",
    "LABEL ",
    "EXPOSE ",
    "VOLUME ",
    "SHELL ",
    "HEALTHCHECK ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "AS ",
    "busybox",
    "scratch",
    "stage",
    "0",
    "1",
    "\n",
    "\\\n",
    " ",
    "\t",
    "--from=",
    "--mount=",
    "type=cache,target=/c",
    "type=secret,id=s",
    "type=bind,from=stage,",
    "--chown=",
    "--chmod=",
    "--platform=",
    "$BUILDPLATFORM",
    "--network=none",
    "--link",
    "<<EOF\n",
    "EOF\n",
    "<<-X ",
    "\"",
    "'",
    "[",
    "]",
    "\",\"",
    "=",
    "$",
    "${A:-b}",
    "${X:?e}",
    "#",
    "# escape=`\n",
    "`",
    "/dst/",
    ".",
    "a b",
    "CMD",
    "NONE",
    "--interval=1s",
    "80/tcp",
];

fn lower_text(text: &[u8]) -> Result<(), (usize, usize)> {
    let lines = text.split(|b| *b == b'\n').count().max(1);
    let tree = match syntax::parse_bytes(text) {
        Ok(tree) => tree,
        Err(e) => return Err((e.span().start_line, lines)),
    };
    let dockerfile = match parse_dockerfile(&tree) {
        Ok(d) => d,
        Err(e) => return Err((e.span.start_line, lines)),
    };
    let options = LowerOptions {
        target_platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    };
    match lower(&dockerfile, &options, &OfflineResolver) {
        Ok(_) => Ok(()),
        Err(e) => Err((e.span.map_or(0, |s| s.start_line), lines)),
    }
}

fn check(text: &[u8]) {
    if let Err((line, lines)) = lower_text(text) {
        assert!(
            line >= 1 && line <= lines,
            "error line {line} outside 1..={lines} for {:?}",
            String::from_utf8_lossy(text)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&bytes);
    }

    #[test]
    fn dockerfile_token_soup(picks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let text: String = picks.iter().map(|i| TOKENS[*i]).collect();
        check(text.as_bytes());
    }

    #[test]
    fn starts_with_from(picks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let text: String = std::iter::once("FROM busybox AS stage\n").chain(picks.iter().map(|i| TOKENS[*i])).collect();
        check(text.as_bytes());
    }
}
