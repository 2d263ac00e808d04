//! Every header and query field, in both directions.

use bytes::Bytes;
use onem2m_primitive::{
    AbsRelTimestamp, Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo,
};
use onem2m_sa_http::{http_to_response, primitive_to_request, request_to_primitive, response_to_http};
use serde_json::{Map, Value, json};

fn full_request() -> RequestPrimitive {
    let mut req = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in/cnt1", Some("CAdmin".into()), "req-42");
    req.rvi = Some("3".into());
    req.gid = Some("grp-1".into());
    req.ot = Some("20150910T062032".into());
    req.rset = Some(AbsRelTimestamp::Absolute("20301231T235959".into()));
    req.rqet = Some(AbsRelTimestamp::Relative(5000));
    req.oet = Some(AbsRelTimestamp::Relative(-100));
    req.ec = Some(3);
    req.vsi = Some("vendor=x".into());
    req.rt = Some(ResponseTypeInfo {
        rtv: 2,
        nu: Some(vec!["http://a.example/n?x=1".into(), "/id-in/CAE1".into()]),
        extra: Map::new(),
    });
    req.tkns = Some(vec!["a.b.c".into(), "d.e.f.g.h".into()]);
    req.aus = Some(json!(["c2ln", "c2lnMg=="]));
    req.rp = Some(AbsRelTimestamp::Absolute("PT1H".into()));
    req.rcn = Some(4);
    req.da = Some(true);
    req.drt = Some(2);
    req.rids = Some(vec!["role1".into(), "role 2".into()]);
    req.tids = Some(vec!["tid1".into()]);
    req.ltids = Some(vec!["l1".into(), "l+2".into()]);
    req.tqi = Some(false);
    req.asi = Some(true);
    req.auri = Some(false);
    req.sqi = Some(true);
    let fc = json!({
        "crb": "20200101T000000", "cra": "20190101T000000", "ms": "20190601T000000", "us": "20210101T000000",
        "sts": 10, "stb": 1, "exb": "20300101T000000", "exa": "20250101T000000",
        "lbl": ["key1/v 1", "key2+x", "k&3"], "ty": [2, 3, 4], "sza": 5, "szb": 1000,
        "cty": ["text/plain", "application/json"], "lim": 10, "fu": 1, "smf": ["SELECT ?x WHERE { ?x ?y ?z }"],
        "fo": 1, "cfs": 1, "cfq": "a=b&c", "lvl": 2, "ofst": 3, "arp": "cnt1",
        "atr": [{"nm": "cr", "val": "Sam"}, {"nm": "rn", "val": "x=y"}],
        "catr": [{"nm": "ty", "val": "4"}],
        "patr": [{"nm": "lbl", "val": "p"}]
    });
    req.fc = fc.as_object().cloned();
    req
}

#[test]
fn every_request_parameter_round_trips() {
    let req = full_request();
    let http = primitive_to_request(&req, "http://cse.example").unwrap();
    let h = http.headers();
    for (name, value) in [
        ("x-m2m-origin", "CAdmin"),
        ("x-m2m-ri", "req-42"),
        ("x-m2m-rvi", "3"),
        ("x-m2m-gid", "grp-1"),
        ("x-m2m-ot", "20150910T062032"),
        ("x-m2m-rst", "20301231T235959"),
        ("x-m2m-ret", "5000"),
        ("x-m2m-oet", "-100"),
        ("x-m2m-ec", "3"),
        ("x-m2m-vsi", "vendor=x"),
        ("x-m2m-rtu", "http://a.example/n?x=1&/id-in/CAE1"),
        ("authorization", "a.b.c+d.e.f.g.h"),
        ("x-m2m-as", "c2ln+c2lnMg=="),
    ] {
        assert_eq!(h[name], value, "{name}");
    }
    let query = http.uri().query().unwrap();
    for field in [
        "rt=2",
        "rp=PT1H",
        "rcn=4",
        "da=true",
        "drt=2",
        "rids=role1+role%202",
        "tids=tid1",
        "ltids=l1+l%2B2",
        "tqi=false",
        "asi=true",
        "auri=false",
        "sqi=true",
        "crb=20200101T000000",
        "sts=10",
        "lbl=key1%2Fv%201+key2%2Bx+k%263",
        "ty=2+3+4",
        "cty=text%2Fplain+application%2Fjson",
        "lim=10",
        "fu=1",
        "cfq=a%3Db%26c",
        "lvl=2",
        "ofst=3",
        "arp=cnt1",
        "cr=Sam",
        "rn=x%3Dy",
        "c.ty=4",
        "p.lbl=p",
    ] {
        assert!(query.split('&').any(|p| p == field), "{field} not in {query}");
    }
    assert_eq!(http.method(), http::Method::GET);
    assert!(h.get("content-type").is_none());
    let back = request_to_primitive(&http).unwrap();
    assert_eq!(back, req);
    assert_eq!(primitive_to_request(&back, "http://cse.example").unwrap().uri(), http.uri());
}

#[test]
fn every_operation_round_trips_with_content() {
    for (op, method) in [
        (Operation::Create, "POST"),
        (Operation::Retrieve, "GET"),
        (Operation::Update, "PUT"),
        (Operation::Delete, "DELETE"),
        (Operation::Notify, "POST"),
    ] {
        let mut req = RequestPrimitive::new(op, "cse-in/ae1", Some("/id-in/CAE1".into()), "r");
        req.pc = Some(json!({"m2m:cnt": {"rn": "x", "lbl": ["a"], "mni": 10}}));
        if op == Operation::Create {
            req.ty = Some(3);
        }
        let http = primitive_to_request(&req, "").unwrap();
        assert_eq!(http.method().as_str(), method);
        let ct = http.headers()["content-type"].to_str().unwrap();
        assert_eq!(ct, if op == Operation::Create { "application/json;ty=3" } else { "application/json" });
        assert_eq!(http.body().as_ref(), br#"{"m2m:cnt":{"rn":"x","lbl":["a"],"mni":10}}"#);
        assert_eq!(request_to_primitive(&http).unwrap(), req, "{op}");
    }
}

#[test]
fn create_without_content_keeps_ty() {
    let mut req = RequestPrimitive::new(Operation::Create, "cse-in", Some("CAE1".into()), "r");
    req.ty = Some(2);
    let http = primitive_to_request(&req, "").unwrap();
    assert!(http.body().is_empty());
    assert_eq!(request_to_primitive(&http).unwrap(), req);
}

#[test]
fn cse_relative_ids_that_look_like_other_forms_are_escaped() {
    for to in ["~/x", "_/y", "~", "a#b/c", "with space/ü", "x?y"] {
        let req = RequestPrimitive::new(Operation::Update, to, None, "r");
        let http = primitive_to_request(&req, "").unwrap();
        assert_eq!(request_to_primitive(&http).unwrap().to, to, "{}", http.uri());
    }
}

#[test]
fn repeated_list_fields_accumulate() {
    let http = http::Request::get("/cse?ty=2&ty=3+4&lbl=a&lbl=b&rids=x&rids=y")
        .header("X-M2M-RI", "r")
        .body(Bytes::new())
        .unwrap();
    let req = request_to_primitive(&http).unwrap();
    let fc = req.fc.unwrap();
    assert_eq!(fc["ty"], json!([2, 3, 4]));
    assert_eq!(fc["lbl"], json!(["a", "b"]));
    assert_eq!(req.rids.unwrap(), ["x", "y"]);
}

#[test]
fn boolean_query_values() {
    for (text, value) in [("true", true), ("1", true), ("false", false), ("0", false)] {
        let http = http::Request::get(format!("/cse?da={text}&tqi={text}"))
            .header("X-M2M-RI", "r")
            .body(Bytes::new())
            .unwrap();
        let req = request_to_primitive(&http).unwrap();
        assert_eq!((req.da, req.tqi), (Some(value), Some(value)));
    }
}

#[test]
fn every_response_parameter_round_trips() {
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::CREATED, "req-42");
    rsp.rvi = Some("2a".into());
    rsp.fr = Some("/id-in".into());
    rsp.ot = Some("20150910T062032".into());
    rsp.rset = Some(AbsRelTimestamp::Relative(60000));
    rsp.ec = Some(2);
    rsp.cnst = Some(2);
    rsp.cnot = Some(7);
    rsp.ati = Some(json!({"ltia": [{"lti": "l1", "tkid": "t1"}]}));
    rsp.asri = Some(true);
    rsp.vsi = Some("v".into());
    rsp.pc = Some(json!({"m2m:cnt": {"ri": "cnt123", "rn": "c"}}));
    let http = response_to_http(&rsp).unwrap();
    assert_eq!(http.status(), 201);
    let h = http.headers();
    for (name, value) in [
        ("x-m2m-rsc", "2001"),
        ("x-m2m-ri", "req-42"),
        ("x-m2m-rvi", "2a"),
        ("x-m2m-origin", "/id-in"),
        ("x-m2m-ot", "20150910T062032"),
        ("x-m2m-rst", "60000"),
        ("x-m2m-ec", "2"),
        ("x-m2m-cts", "2"),
        ("x-m2m-cto", "7"),
        ("x-m2m-ati", "l1:t1"),
        ("x-m2m-asri", "true"),
        ("x-m2m-vsi", "v"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(h[name], value, "{name}");
    }
    assert_eq!(http_to_response(&http).unwrap(), rsp);
}

#[test]
fn error_response_carries_debug_info() {
    let rsp = ResponsePrimitive::error(ResponseStatusCode::SECURITY_ASSOCIATION_REQUIRED, "r9", "no SA");
    let http = response_to_http(&rsp).unwrap();
    assert_eq!(http.status(), 403);
    assert_eq!(http.body().as_ref(), br#"{"m2m:dbg":"no SA"}"#);
    let back = http_to_response(&http).unwrap();
    assert_eq!(back.debug_info(), Some("no SA"));
    assert_eq!(back, rsp);
}

#[test]
fn unknown_headers_are_ignored_and_names_are_case_insensitive() {
    let http = http::Request::delete("/cse/x")
        .header("x-m2m-ri", "r")
        .header("X-M2M-ORIGIN", "CAE1")
        .header("X-Other", "whatever")
        .body(Bytes::new())
        .unwrap();
    let req = request_to_primitive(&http).unwrap();
    assert_eq!((req.op, req.fr.as_deref(), req.rqi.as_str()), (Operation::Delete, Some("CAE1"), "r"));
    assert_eq!(req.extra, Map::<String, Value>::new());
}
