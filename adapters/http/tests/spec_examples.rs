//! Examples copied from TS-0009 V3.9.1, each test naming its clause.

use bytes::Bytes;
use onem2m_primitive::{AbsRelTimestamp, Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_http::{http_to_response, primitive_to_request, request_to_primitive, response_to_http};
use serde_json::json;

fn get(target: &str) -> http::Request<Bytes> {
    http::Request::get(target).header("X-M2M-RI", "r1").body(Bytes::new()).unwrap()
}

/// Table 6.2.2.1-1: To parameter ↔ path component, both directions.
#[test]
fn clause_6_2_2_1_path_mapping_table() {
    let rows = [
        ("cin00856", "/cin00856"),
        ("/CSE178/CSEBase/ae12/cont27/contInst696", "/~/CSE178/CSEBase/ae12/cont27/contInst696"),
        ("/CSE178/cin00856", "/~/CSE178/cin00856"),
        (
            "//mym2msp.org/CSE178/CSEBase/ae12/cont27/contInst696",
            "/_/mym2msp.org/CSE178/CSEBase/ae12/cont27/contInst696",
        ),
        ("//mym2msp.org/CSE178/cin00856", "/_/mym2msp.org/CSE178/cin00856"),
        ("CSEBase/ae12/cont27/contInst696", "/CSEBase/ae12/cont27/contInst696"),
    ];
    for (to, path) in rows {
        let req = request_to_primitive(&get(path)).unwrap();
        assert_eq!(req.to, to, "{path}");
        let back = primitive_to_request(&RequestPrimitive::new(Operation::Retrieve, to, None, "r1"), "").unwrap();
        assert_eq!(back.uri().path(), path, "{to}");
    }
    // The table's first row writes the structured CSE-relative path with a trailing `/`;
    // the reverse mapping keeps it as part of `to`.
    let req = request_to_primitive(&get("/CSEBase/ae12/cont27/contInst696/")).unwrap();
    assert_eq!(req.to, "CSEBase/ae12/cont27/contInst696/");
}

/// §6.2.2.1: absolute-form Request-Target when sent through a proxy.
#[test]
fn clause_6_2_2_1_absolute_form() {
    let req = RequestPrimitive::new(Operation::Retrieve, "/CSE178/cin00856", None, "r1");
    let http = primitive_to_request(&req, "http://proxy.example:8080").unwrap();
    assert_eq!(http.uri(), "http://proxy.example:8080/~/CSE178/cin00856");
    assert_eq!(request_to_primitive(&http).unwrap().to, "/CSE178/cin00856");
}

/// §6.2.2.2 EXAMPLE 1: `?rt=1&rp=P1Y2M3DT10H1M0S`. (The example writes the SP-relative To
/// without the `/~` prefix that §6.2.2.1 requires; the query part is what is checked here.)
#[test]
fn clause_6_2_2_2_example_1_non_blocking_synch() {
    let req = request_to_primitive(&get("/~/CSE1234/RCSE78/container234?rt=1&rp=P1Y2M3DT10H1M0S")).unwrap();
    assert_eq!(req.to, "/CSE1234/RCSE78/container234");
    assert_eq!(req.rt.as_ref().map(|rt| rt.rtv), Some(1));
    assert_eq!(req.rp, Some(AbsRelTimestamp::Absolute("P1Y2M3DT10H1M0S".into())));
    let back = primitive_to_request(&req, "").unwrap();
    assert_eq!(back.uri(), "/~/CSE1234/RCSE78/container234?rt=1&rp=P1Y2M3DT10H1M0S");
}

/// §6.2.2.2 EXAMPLE 2: discovery `?ty=3&cr=Sam&fu=1` (attribute filter `cr=Sam`).
#[test]
fn clause_6_2_2_2_example_2_discovery() {
    let req = request_to_primitive(&get("/~/CSE1234/RCSE78?ty=3&cr=Sam&fu=1")).unwrap();
    let fc = serde_json::Value::Object(req.fc.clone().unwrap());
    assert_eq!(fc, json!({"ty": [3], "atr": [{"nm": "cr", "val": "Sam"}], "fu": 1}));
    let back = primitive_to_request(&req, "").unwrap();
    assert_eq!(request_to_primitive(&back).unwrap(), req);
}

/// §6.2.2.2 EXAMPLE 3: semantic discovery, percent-encoded `smf` (copied verbatim, line
/// breaks of the document removed).
#[test]
fn clause_6_2_2_2_example_3_semantic_filter() {
    let target = "/CSE1234/RCSE78?smf=PREFIX%20rdf%3A%20%3Chttp%3A%2F%2Fwww.w3.org%2F1999%2F02%2F22-rdf-syntax-ns%23%3E%20PREFIX%20myOnt%3A%20%3Chttp%3A%2F%2Fwww.onem2m.org%2Fontology%2Fmyontology%23%3E%20SELECT%20%3Fcar%20WHERE%20%7B%20%3Fcar%20%20rdf%3Atype%20myOnt%3Acar%20%7D";
    let req = request_to_primitive(&get(target)).unwrap();
    assert_eq!(req.to, "CSE1234/RCSE78");
    assert_eq!(
        req.fc.as_ref().unwrap()["smf"],
        json!([
            "PREFIX rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> PREFIX myOnt: <http://www.onem2m.org/ontology/myontology#> SELECT ?car WHERE { ?car  rdf:type myOnt:car }"
        ])
    );
    let back = primitive_to_request(&req, "").unwrap();
    assert_eq!(back.uri().to_string(), target);
}

/// §6.2.2.2: `ty=2+3+4` is the list 2 3 4; child/parent attributes take `c.`/`p.`.
#[test]
fn clause_6_2_2_2_lists_and_attribute_prefixes() {
    let req = request_to_primitive(&get(
        "/cse?ty=2+3+4&attname1=attvalue1&attname2=attvalue2&c.attname1=attvalue1&p.attname2=attvalue2",
    ))
    .unwrap();
    let fc = serde_json::Value::Object(req.fc.clone().unwrap());
    assert_eq!(
        fc,
        json!({
            "ty": [2, 3, 4],
            "atr": [{"nm": "attname1", "val": "attvalue1"}, {"nm": "attname2", "val": "attvalue2"}],
            "catr": [{"nm": "attname1", "val": "attvalue1"}],
            "patr": [{"nm": "attname2", "val": "attvalue2"}]
        })
    );
}

/// §6.2.2.2 partial Retrieve, Case 1 (`?atrl=ri+lbl+rr`) and Case 2 (`?atrl=rr`).
#[test]
fn clause_6_2_2_2_partial_retrieve() {
    let case1 = request_to_primitive(&get("/_/example.net/myCSE/-/Cont1?atrl=ri+lbl+rr")).unwrap();
    assert_eq!(case1.to, "//example.net/myCSE/-/Cont1");
    assert_eq!(case1.pc, Some(json!({"m2m:atrl": ["ri", "lbl", "rr"]})));
    assert_eq!(primitive_to_request(&case1, "").unwrap().uri(), "/_/example.net/myCSE/-/Cont1?atrl=ri+lbl+rr");

    let case2 = request_to_primitive(&get("/_/example.net/myCSE/-/Cont1?atrl=rr")).unwrap();
    assert_eq!(case2.to, "//example.net/myCSE/-/Cont1#rr");
    assert_eq!(case2.pc, None);
    assert_eq!(primitive_to_request(&case2, "").unwrap().uri(), "/_/example.net/myCSE/-/Cont1?atrl=rr");
}

/// §6.2.1 and §6.4.3: POST with `ty` in Content-Type is a CREATE, without it a NOTIFY.
#[test]
fn clause_6_2_1_and_6_4_3_create_or_notify() {
    for ct in ["application/vnd.onem2m-res+json; ty=3", "application/json;ty=3", "APPLICATION/JSON ; TY=3"] {
        let http = http::Request::post("/cse")
            .header("X-M2M-RI", "r1")
            .header("Content-Type", ct)
            .body(Bytes::from_static(br#"{"m2m:cnt":{}}"#))
            .unwrap();
        let req = request_to_primitive(&http).unwrap();
        assert_eq!((req.op, req.ty), (Operation::Create, Some(3)), "{ct}");
    }
    let http = http::Request::post("/cse")
        .header("X-M2M-RI", "r1")
        .header("Content-Type", "application/vnd.onem2m-ntfy+json")
        .body(Bytes::from_static(br#"{"m2m:sgn":{"vrq":true}}"#))
        .unwrap();
    assert_eq!(request_to_primitive(&http).unwrap().op, Operation::Notify);
}

/// §6.4.19: the Authorization example (two tokens joined by `+`, whitespace insignificant).
#[test]
fn clause_6_4_19_authorization_tokens() {
    let value = "eyJ0eXAiOiJK.eyJpc3MiOiJqb2UiLA0KIC.dBjftJeZ4CVP+ eyJ0eXAiOiJK.eyJpc3MiOiJqb2UiLA0KIC.dBjftJeZ4CVP.5eym8TW_c8SuK.SdiwkIr3a.XFBoMYUZo";
    let http =
        http::Request::get("/cse").header("X-M2M-RI", "r1").header("Authorization", value).body(Bytes::new()).unwrap();
    let req = request_to_primitive(&http).unwrap();
    assert_eq!(
        req.tkns.unwrap(),
        [
            "eyJ0eXAiOiJK.eyJpc3MiOiJqb2UiLA0KIC.dBjftJeZ4CVP",
            "eyJ0eXAiOiJK.eyJpc3MiOiJqb2UiLA0KIC.dBjftJeZ4CVP.5eym8TW_c8SuK.SdiwkIr3a.XFBoMYUZo"
        ]
    );
    // §7.1: an OAuth 2.0 Bearer credential is not a Tokens parameter.
    let bearer = http::Request::get("/cse")
        .header("X-M2M-RI", "r1")
        .header("Authorization", "Bearer abc.def")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(request_to_primitive(&bearer).unwrap().tkns, None);
}

/// §6.4.24: the X-M2M-AS example.
#[test]
fn clause_6_4_24_authorization_signatures() {
    let value = "i6watmQQQ1y3GB-VsWq5fJKzQcBB4jRfH1bfJFj0JtFVtLotttzYyA==+ IWijxQjUrcXBYoCei4QxjWo9Kg8D3p9tlWoT4t0_gyTE96639In0FZFY2_rvP-_bMJ01EarmKZsR5VW3rwoPxw==";
    let http =
        http::Request::get("/cse").header("X-M2M-RI", "r1").header("X-M2M-AS", value).body(Bytes::new()).unwrap();
    let req = request_to_primitive(&http).unwrap();
    assert_eq!(
        req.aus,
        Some(json!([
            "i6watmQQQ1y3GB-VsWq5fJKzQcBB4jRfH1bfJFj0JtFVtLotttzYyA==",
            "IWijxQjUrcXBYoCei4QxjWo9Kg8D3p9tlWoT4t0_gyTE96639In0FZFY2_rvP-_bMJ01EarmKZsR5VW3rwoPxw=="
        ]))
    );
}

/// §6.4.18: `X-M2M-ATI: lti-value1:tkid-value1 + lti-value2:tkid-value2`.
#[test]
fn clause_6_4_18_assigned_token_identifiers() {
    let http = http::Response::builder()
        .status(200)
        .header("X-M2M-RSC", "2000")
        .header("X-M2M-RI", "r1")
        .header("X-M2M-ATI", "lti-value1:tkid-value1 + lti-value2:tkid-value2")
        .body(Bytes::new())
        .unwrap();
    let rsp = http_to_response(&http).unwrap();
    assert_eq!(
        rsp.ati,
        Some(
            json!({"ltia": [{"lti": "lti-value1", "tkid": "tkid-value1"}, {"lti": "lti-value2", "tkid": "tkid-value2"}]})
        )
    );
    let back = response_to_http(&rsp).unwrap();
    assert_eq!(back.headers()["x-m2m-ati"], "lti-value1:tkid-value1+lti-value2:tkid-value2");
}

/// §6.3.2 / §6.4.17: 4000 and 4102 both map to 400; X-M2M-RSC keeps the exact code.
#[test]
fn clause_6_3_2_status_and_rsc() {
    for (code, status) in [(4000, 400), (4102, 400), (4107, 403), (2001, 201), (4015, 415), (5001, 501)] {
        let rsp = ResponsePrimitive::new(ResponseStatusCode::new(code), "r1");
        let http = response_to_http(&rsp).unwrap();
        assert_eq!(http.status().as_u16(), status);
        assert_eq!(http.headers()["x-m2m-rsc"], code.to_string().as_str());
        assert_eq!(http_to_response(&http).unwrap().rsc.code(), code);
    }
}
