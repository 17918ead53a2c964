//! Built-in tables from source codes to event types, and public labels for headlines
//! built from CAD data. A subscription's `types` table is merged over these (CAP, EIDO)
//! or replaces them (mapped JSON), so an agency adds or changes a mapping in config.

use std::collections::BTreeMap;

/// SAME event codes (CAP `eventCode` with valueName SAME) to event types.
pub const CAP_SAME: &[(&str, &str)] = &[
    // Law enforcement and civil.
    ("CAE", "missing_child"),
    ("BLU", "bolo"),
    ("LEW", "general"),
    ("LAE", "general"),
    ("CEM", "general"),
    ("CDW", "general"),
    ("SPW", "shelter_in_place"),
    ("EVI", "evacuation"),
    ("HMW", "hazmat"),
    ("RHW", "hazmat"),
    ("NUW", "hazmat"),
    ("FRW", "evacuation"),
    // Weather and geophysical.
    ("TOR", "severe_weather"),
    ("TOA", "severe_weather"),
    ("SVR", "severe_weather"),
    ("SVA", "severe_weather"),
    ("SVS", "severe_weather"),
    ("FFW", "severe_weather"),
    ("FFA", "severe_weather"),
    ("FFS", "severe_weather"),
    ("FLW", "severe_weather"),
    ("FLA", "severe_weather"),
    ("FLS", "severe_weather"),
    ("WSW", "severe_weather"),
    ("WSA", "severe_weather"),
    ("BZW", "severe_weather"),
    ("HWW", "severe_weather"),
    ("HWA", "severe_weather"),
    ("HUW", "severe_weather"),
    ("HUA", "severe_weather"),
    ("HLS", "severe_weather"),
    ("TRW", "severe_weather"),
    ("TRA", "severe_weather"),
    ("SSW", "severe_weather"),
    ("SSA", "severe_weather"),
    ("EWW", "severe_weather"),
    ("DSW", "severe_weather"),
    ("ECW", "severe_weather"),
    ("EHW", "severe_weather"),
    ("TSW", "severe_weather"),
    ("TSA", "severe_weather"),
    ("EQW", "severe_weather"),
    ("AVW", "severe_weather"),
    ("VOW", "severe_weather"),
    ("SMW", "severe_weather"),
    ("SPS", "severe_weather"),
];

/// SAME codes of tests and administrative messages: never posted publicly.
pub const SAME_NOT_PUBLIC: &[&str] = &["RMT", "RWT", "DMO", "NPT", "ADR"];

/// EIDO common incident types (EIDO-IncidentType-Common, from APCO ANS 2.103.2) to event
/// types. No registry value means AMBER: a raw abduction call is a missing child, posted
/// (after approval) without AMBER wording.
pub const EIDO_TYPES: &[(&str, &str)] = &[
    ("ABDUCTF", "missing_child"),
    ("ABDUCTNF", "missing_child"),
    ("BARICADE", "barricaded_suspect"),
    ("HOSTAGE", "barricaded_suspect"),
    ("ACTSHOOT", "shelter_in_place"),
    ("TERROR", "shelter_in_place"),
    ("BOMB", "evacuation"),
    ("EXPLOS", "evacuation"),
    ("HAZMAT", "hazmat"),
    ("GASLEAK", "hazmat"),
    ("GASLEAKI", "hazmat"),
    ("GASLEAKO", "hazmat"),
    ("MVA", "road_closure"),
    ("MVAINJY", "road_closure"),
    ("MVAHR", "road_closure"),
    ("THAZ", "road_closure"),
    ("CU1", "general"),
    ("CU2", "general"),
    ("CU3", "general"),
    ("CURFEW", "general"),
    ("PURSUIT", "general"),
    ("MAJORINC", "general"),
];

/// The built-in `table` with the subscription's `overrides` on top. Codes compare
/// without case and surrounding spaces (the EIDO registry itself has "PERMISS ").
pub fn merged(table: &[(&str, &str)], overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = table.iter().map(|(k, v)| (normalise(k), (*v).to_owned())).collect();
    out.extend(overrides.iter().map(|(k, v)| (normalise(k), v.clone())));
    out
}

/// A source code as the tables key it.
pub fn normalise(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

/// A plain public headline for an event type, for CAD data that has none of its own.
pub fn label(event_type: &str) -> &'static str {
    match event_type {
        "missing_child" => "Missing child",
        "barricaded_suspect" => "Police activity: barricaded suspect",
        "shelter_in_place" => "Police emergency: shelter in place",
        "evacuation" => "Evacuation",
        "hazmat" => "Hazardous materials incident",
        "road_closure" => "Traffic incident",
        "bolo" => "Police are looking for a person or vehicle",
        "silver_alert" => "Missing person",
        "severe_weather" => "Weather warning",
        _ => "Police activity",
    }
}

/// A street address generalised to its block: "1234 Main St" → "1200 block of Main St".
/// Text without a leading house number is returned as it is.
pub fn block_level(address: &str) -> String {
    let a = address.trim();
    let digits: String = a.chars().take_while(char::is_ascii_digit).collect();
    let rest = a[digits.len()..].trim_start();
    match digits.parse::<u64>() {
        Ok(n) if !rest.is_empty() && a[digits.len()..].starts_with(char::is_whitespace) => {
            format!("{} block of {rest}", n / 100 * 100)
        }
        _ => a.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_codes_ignore_case_and_spaces() {
        let mut o = BTreeMap::new();
        o.insert("lew".to_owned(), "barricaded_suspect".to_owned());
        let t = merged(CAP_SAME, &o);
        assert_eq!(t.get("LEW").map(String::as_str), Some("barricaded_suspect"));
        assert_eq!(t.get("CAE").map(String::as_str), Some("missing_child"));
        assert_eq!(normalise(" PERMISS "), "PERMISS");
    }

    #[test]
    fn addresses_go_to_the_block() {
        assert_eq!(block_level("1234 Main St"), "1200 block of Main St");
        assert_eq!(block_level("57 Elm Ave, Apt 2"), "0 block of Elm Ave, Apt 2");
        assert_eq!(block_level("LOCUST ST"), "LOCUST ST");
        assert_eq!(block_level("I-81 NB"), "I-81 NB");
        assert_eq!(block_level("3800"), "3800");
    }
}
