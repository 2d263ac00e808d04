//! oneM2M identifier forms (TS-0004 §6.2.3, TS-0001 Table 7.2-1): spec examples and
//! generated identifiers.

use onem2m_primitive::{AeIdType, Id, IdForm, MAX_ID_BYTES};
use proptest::prelude::*;

#[test]
fn spec_examples_parse() {
    let cases = [
        ("//myoperator.com/cse1", IdForm::Absolute),
        ("//myoperator.com/S563423", IdForm::Absolute),
        ("//myoperator.com/cse2/C3532ea3", IdForm::Absolute),
        ("/cse2/C3532ea3", IdForm::SpRelative),
        ("/CSE090112/C190XX7T", IdForm::SpRelative),
        ("/CSE987776/a234361", IdForm::SpRelative),
        ("/CSE00030F003A/CSE-Building-A3/HVAC-AE/WaterTemp/sample0098", IdForm::SpRelative),
        ("//m2m.things.com/ab3f124a/Ca2efb3f4", IdForm::Absolute),
        ("bigCSE025/mainStreet/house5432/livingRoom/temperature", IdForm::CseRelative),
        ("-/HVAC-AE/WaterTemp/sample0098", IdForm::CseRelative),
        ("000AFE030003/sample0098", IdForm::CseRelative),
        ("C190XX7T", IdForm::CseRelative),
        ("Sa3e3f3ab", IdForm::CseRelative),
    ];
    for (text, form) in cases {
        let id: Id = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(id.form(), form, "{text}");
        assert_eq!(id.to_string(), text);
    }
    let id: Id = "//myoperator.com/cse2/C3532ea3".parse().unwrap();
    assert_eq!(id.sp_id(), Some("//myoperator.com"));
    assert_eq!(id.cse_id(), Some("/cse2"));
    assert_eq!(id.sp_relative(), Some("/cse2/C3532ea3"));
    assert_eq!(id.ae_id_type(), Some(AeIdType::CType));
}

fn segment() -> impl Strategy<Value = String> {
    // Never "." or "..": the first character is not a dot.
    "[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,12}"
}

fn fqdn() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..4).prop_map(|l| l.join("."))
}

#[derive(Debug, Clone)]
struct Parts {
    sp: Option<String>,
    cse: Option<String>,
    path: Vec<String>,
    attr: Option<String>,
}

impl Parts {
    fn text(&self) -> String {
        let mut s = String::new();
        if let Some(sp) = &self.sp {
            s.push_str("//");
            s.push_str(sp);
        }
        if let Some(cse) = &self.cse {
            s.push('/');
            s.push_str(cse);
        }
        for (i, seg) in self.path.iter().enumerate() {
            if i > 0 || self.cse.is_some() {
                s.push('/');
            }
            s.push_str(seg);
        }
        if let Some(attr) = &self.attr {
            s.push('#');
            s.push_str(attr);
        }
        s
    }
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(segment(), 0..5)
}

fn attr() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-z]{1,4}")
}

fn parts() -> impl Strategy<Value = Parts> {
    prop_oneof![
        (prop::collection::vec(segment(), 1..5), attr()).prop_map(|(path, attr)| Parts {
            sp: None,
            cse: None,
            path,
            attr,
        }),
        (segment(), path(), attr()).prop_map(|(cse, path, attr)| Parts { sp: None, cse: Some(cse), path, attr }),
        (fqdn(), segment(), path(), attr()).prop_map(|(sp, cse, path, attr)| Parts {
            sp: Some(sp),
            cse: Some(cse),
            path,
            attr,
        }),
    ]
}

proptest! {
    #[test]
    fn generated_ids_round_trip(p in parts()) {
        let text = p.text();
        let id: Id = text.parse().unwrap();
        prop_assert_eq!(id.to_string(), text.clone());
        let form = match (&p.sp, &p.cse) {
            (Some(_), _) => IdForm::Absolute,
            (None, Some(_)) => IdForm::SpRelative,
            (None, None) => IdForm::CseRelative,
        };
        prop_assert_eq!(id.form(), form);
        prop_assert_eq!(id.sp_id().map(|s| s[2..].to_owned()), p.sp.clone());
        prop_assert_eq!(id.cse_id().map(|s| s[1..].to_owned()), p.cse.clone());
        prop_assert_eq!(id.cse_relative(), p.path.join("/"));
        prop_assert_eq!(id.attribute(), p.attr.as_deref());
        prop_assert_eq!(id.is_cse_id(), p.cse.is_some() && p.path.is_empty() && p.attr.is_none());
        if form == IdForm::SpRelative {
            let abs = id.to_absolute("sp.example.com").unwrap();
            prop_assert_eq!(abs.form(), IdForm::Absolute);
            prop_assert_eq!(abs.to_string(), format!("//sp.example.com{text}"));
            prop_assert_eq!(abs.sp_relative(), Some(text.as_str()));
        }
        if form == IdForm::CseRelative {
            let sp_rel = id.with_cse_id("/id-in").unwrap();
            prop_assert_eq!(sp_rel.to_string(), format!("/id-in/{text}"));
            prop_assert_eq!(sp_rel.cse_relative(), id.cse_relative());
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_and_round_trip(s in "[ -~é/]{0,40}") {
        if let Ok(id) = s.parse::<Id>() {
            prop_assert_eq!(id.to_string(), s.clone());
            prop_assert!(s.len() <= MAX_ID_BYTES);
            prop_assert!(!s.contains("//") || s.starts_with("//"));
            prop_assert!(!s.ends_with('/'));
        }
    }
}
