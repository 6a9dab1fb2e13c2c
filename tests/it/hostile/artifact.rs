//! Hostile requests to `POST /artifact/:callbackId`: callback tokens,
//! callback ids (numeric and legacy), bodies, and framing.

use super::b64;
use super::case::{Case, case};
use crate::common::Wire;

pub(super) fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    v.push(
        case(
            "dup-query",
            "artifact token twice",
            "POST",
            "/artifact/{JL}?token={TL}&token={TL}",
        )
        .body("aGVsbG8=")
        .expect(400, "BAD_REQUEST", "'token' is given more than once"),
    );

    // --- Artifact authentication and callback ids ----------------------------
    let art = |label: &str, target: &str| {
        case("artifact-auth", label.to_string(), "POST", target)
            .h("Content-Type", "text/plain")
            .body("aGVsbG8=")
    };
    v.push(art("artifact no token", "/artifact/{JL}").expect(
        401,
        "UNAUTHORIZED",
        "missing callback token",
    ));
    v.push(
        art("artifact wrong token", "/artifact/{JL}?token=wrong").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(art("artifact empty token", "/artifact/{JL}?token=").expect(
        401,
        "UNAUTHORIZED",
        "invalid callback token",
    ));
    v.push(
        art("artifact other job's token", "/artifact/{JL}?token={TM}").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(
        art(
            "artifact UPLOAD_SECRET as token",
            "/artifact/{JL}?token={S}",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art("artifact secret as Bearer only", "/artifact/{JL}")
            .h("Authorization", "Bearer {S}")
            .expect(401, "UNAUTHORIZED", "missing callback token"),
    );
    v.push(
        art("artifact token, case changed", "/artifact/{JL}?token={TLU}").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(
        art(
            "legacy form, wrong secret",
            "/artifact/good-plugin-1.0.0-linux?token=wrong",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art(
            "legacy form, job token",
            "/artifact/good-plugin-1.0.0-linux?token={TL}",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art("legacy form, no token", "/artifact/good-plugin-1.0.0-linux").expect(
            401,
            "UNAUTHORIZED",
            "missing callback token",
        ),
    );
    v.push(
        art(
            "legacy form, right secret, hone-build's own job",
            "/artifact/good-plugin-1.0.0-linux?token={S}",
        )
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    v.push(
        art(
            "legacy form, unknown job",
            "/artifact/good-plugin-9.9.9-linux?token={S}",
        )
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    v.push(
        art("numeric id unknown", "/artifact/987654?token={TL}").expect(
            404,
            "NOT_FOUND",
            "unknown build job",
        ),
    );
    v.push(art("id 0", "/artifact/0?token={TL}").expect(404, "NOT_FOUND", "unknown build job"));
    v.push(
        art(
            "id > i64",
            "/artifact/99999999999999999999999999?token={TL}",
        )
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    v.push(
        art("id i64::MAX", "/artifact/9223372036854775807?token={TL}").expect(
            404,
            "NOT_FOUND",
            "unknown build job",
        ),
    );
    v.push(art("id -1", "/artifact/-1?token={TL}").expect(
        401,
        "UNAUTHORIZED",
        "invalid callback token",
    ));
    let cb_bad = |label: &str, target: &str, msg: &str| {
        case("callback-id", label.to_string(), "POST", target)
            .h("Content-Type", "text/plain")
            .body("aGVsbG8=")
            .expect(400, "BAD_REQUEST", msg)
    };
    let only = "callback id may contain only";
    v.push(cb_bad(
        "id ..%2F",
        "/artifact/..%2F..%2F{P}?token={S}",
        only,
    ));
    v.push(cb_bad(
        "id %2e%2e%2f",
        "/artifact/%2e%2e%2f{P}?token={S}",
        only,
    ));
    v.push(cb_bad(
        "id ;",
        "/artifact/{JL};touch%20{P}?token={TL}",
        only,
    ));
    v.push(cb_bad("id |", "/artifact/{JL}|id?token={TL}", only));
    v.push(cb_bad(
        "id $(id)",
        "/artifact/$(touch%20{P})?token={S}",
        only,
    ));
    v.push(cb_bad("id backticks", "/artifact/`id`?token={S}", only));
    v.push(cb_bad("id &&", "/artifact/{JL}%26%26id?token={TL}", only));
    v.push(cb_bad("id space", "/artifact/{JL}%20?token={TL}", only));
    v.push(cb_bad("id NUL", "/artifact/{JL}%00?token={TL}", only));
    v.push(cb_bad(
        "id overlong %C0%AE",
        "/artifact/%C0%AE%C0%AE?token={S}",
        "path segment is not valid UTF-8",
    ));
    v.push(cb_bad(
        "id overlong %E0%80%AE",
        "/artifact/%E0%80%AE?token={S}",
        "path segment is not valid UTF-8",
    ));
    v.push(cb_bad(
        "id 301 chars",
        &format!("/artifact/{}?token={{S}}", "a".repeat(301)),
        only,
    ));
    v.push(cb_bad(
        "id fullwidth digit",
        "/artifact/%EF%BC%91?token={TL}",
        only,
    ));
    v.push(cb_bad(
        "legacy id with traversal",
        "/artifact/good-plugin-1.0.0-..%2F..%2Flinux?token={S}",
        only,
    ));
    v.push(cb_bad(
        "legacy id, SQL quote",
        "/artifact/good-plugin'%20OR%20'1'='1?token={S}",
        only,
    ));
    v.push(
        case(
            "callback-id",
            "legacy id '..'",
            "POST",
            "/artifact/..?token={S}",
        )
        .body("aGVsbG8=")
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    let art_ok = |label: &str| {
        case(
            "artifact-body",
            label.to_string(),
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "text/plain")
    };
    v.push(art_ok("artifact empty body").body(Vec::new()).expect(
        400,
        "BAD_REQUEST",
        "artifact body is empty",
    ));
    v.push(
        art_ok("artifact invalid base64")
            .body("@@@@ not base64")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        art_ok("artifact sha256 mismatch")
            .h("x-artifact-sha256", &"0".repeat(64))
            .body(b64(b"binary"))
            .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        art_ok("artifact sha256 header is a path")
            .h("x-artifact-sha256", "../../../{P}")
            .h("x-artifact-name", "../../{P}.bin")
            .h("x-artifact-target", "../../{P}")
            .body(b64(b"binary"))
            .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        case(
            "artifact-body",
            "artifact raw, sha256 mismatch",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "application/octet-stream")
        .h("x-artifact-sha256", &"f".repeat(64))
        .body(vec![0u8, 1, 2, 3])
        .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        case(
            "artifact-body",
            "legacy form, right secret, empty body",
            "POST",
            "/artifact/old-plugin-0.9.0-linux?token={S}",
        )
        .body(Vec::new())
        .expect(400, "BAD_REQUEST", "artifact body is empty"),
    );
    v.push(
        case(
            "framing",
            "artifact CL above MAX_BODY_BYTES",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Length", "70000")
        .framed(b"aGVsbG8=".to_vec())
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case(
            "framing",
            "artifact raw CL 8192, 3000 bytes then FIN",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "application/octet-stream")
        .h("Content-Length", "8192")
        .framed(vec![0x42u8; 3000])
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v
}
