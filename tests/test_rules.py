"""Audit rules: parsing with errors that name the line, matching on DICOM attributes and paths, verdicts."""

from pathlib import Path

import pytest

from train.rules import RulesError, check, load_rules, matches, rule_keywords

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "rules.toml"

BREAST = {"Modality": "US", "BodyPartExamined": "BREAST", "StudyDescription": "US BREAST BILATERAL"}
MARKER = {"body_marker": {"confidence": 0.9}}
CALIPER = {"radial_line": {"confidence": 0.4}}


def rules_from(tmp_path, text: str, **kw):
    p = tmp_path / "rules.toml"
    p.write_text(text)
    return load_rules(p, **kw)


def test_the_shipped_example_parses_and_says_what_it_means():
    rules = load_rules(EXAMPLE)
    assert [r.line for r in rules] == [11, 17, 22, 28]
    breast, research, folder, thyroid = rules
    assert breast.require == ("body_marker",) and breast.dicom_only
    assert research.forbid == ("radial_line", "text") and folder.min_confidence == 0.6 and not folder.dicom_only
    assert thyroid.allow == ("body_marker", "radial_line")
    assert rule_keywords(rules) == ["BodyPartExamined", "Modality", "SeriesDescription", "StudyDescription"]


def test_dicom_conditions_match_case_insensitive_globs_and_never_plain_images():
    breast = load_rules(EXAMPLE)[0]
    assert matches(breast, ("a.dcm",), BREAST)
    assert matches(breast, ("a.dcm",), {**BREAST, "BodyPartExamined": "breast"})
    assert not matches(breast, ("a.dcm",), {**BREAST, "BodyPartExamined": "THYROID"})
    assert not matches(breast, ("a.dcm",), {"Modality": "US"}), "a missing attribute does not match"
    assert not matches(breast, ("a.png",), None), "plain images match only rules without DICOM conditions"


def test_path_rules_match_plain_images_by_folder(tmp_path):
    folder = load_rules(EXAMPLE)[2]
    assert matches(folder, ("/data/research/x.png", "research/x.png"), None)
    assert not matches(folder, ("/data/clinic/x.png", "x.png"), None)


def test_verdicts_require_forbid_allow_and_min_confidence():
    rules = load_rules(EXAMPLE)
    paths = ("/a/research/x.dcm", "research/x.dcm")
    assert check(rules, MARKER, paths, BREAST) == ("pass", [], ["breast: body marker required",
                                                               "research folder: no calipers or text"], [])
    verdict, failures, _, failed = check(rules, {}, paths, BREAST)
    assert verdict == "fail" and failures == ["breast: body marker required: missing body_marker"]
    assert failed == ["breast: body marker required"]
    # a caliper at confidence 0.4 is under the folder rule's min_confidence 0.6: it does not count there
    assert check(rules, {**MARKER, **CALIPER}, paths, BREAST)[0] == "pass"
    strong = {"radial_line": {"confidence": 0.8}, "text": {"confidence": 0.9}}
    assert check(rules, strong, paths, None)[1] == ["research folder: no calipers or text: has radial_line (forbidden)",
                                                    "research folder: no calipers or text: has text (forbidden)"]
    thyroid = {"StudyDescription": "THYROID LEFT"}
    assert check(rules, {"vascular_flow": {"confidence": 1.0}}, ("t.dcm",), thyroid)[1] == [
        "thyroid: only body marker and calipers: has vascular_flow (not allowed)"]
    assert check(rules, MARKER, ("t.png",), None) == ("unmatched", [], [], [])


def test_dicom_keywords_work_as_match_keys(tmp_path):
    (rule,) = rules_from(tmp_path, '[[rule]]\nmatch.PatientPosition = "HFS"\nforbid = ["text"]\n')
    assert rule.name == "rule 1" and rule_keywords([rule]) == ["PatientPosition"]
    assert matches(rule, ("x.dcm",), {"PatientPosition": "hfs"})


@pytest.mark.parametrize("text, line, words", [
    ('[[rule]]\nname = "a"\nrequire = [body_marker]\n', 3, ["TOML syntax error", "line 3"]),
    ('[[rule]]\nname = "a"\nrequire = ["body_marker"\n', None, ["TOML syntax error", "end of document"]),
    ('[[rule]]\nname = "a"\nrequire = ["body_marker"]\n\n[[rule]]\nname = "b"\nforbid = ["calipers"]\n', 7,
     ["rule 'b'", "unknown kind 'calipers'", "radial_line"]),
    ('[[rule]]\nname = "a"\nmatch.bodypart = "BREAST"\nrequire = ["text"]\n', 3, ["unknown match key 'bodypart'",
                                                                                   "body_part"]),
    ('[[rule]]\nname = "a"\nrequires = ["text"]\n', 3, ["unknown key 'requires'"]),
    ('[[rule]]\nname = "a"\nmatch.path = "*"\n', 1, ["says nothing about kinds"]),
    ('[[rule]]\nname = "a"\nrequire = ["text"]\nforbid = ["text"]\n', 3, ["both required and forbidden"]),
    ('[[rule]]\nname = "a"\nrequire = "text"\n', 3, ["takes a list of kinds"]),
    ('[[rule]]\nname = "a"\nforbid = ["text"]\nmin_confidence = 2\n', 4, ["from 0 to 1"]),
    ('[[rule]]\nname = "a"\nforbid = ["text"]\n[[rule]]\nname = "a"\nforbid = ["text"]\n', 5, ["its own"]),
    ('[settings]\nx = 1\n', 1, ["unknown top-level key 'settings'"]),
    ('# nothing\n', None, ["no rules"]),
])
def test_a_bad_rules_file_names_the_line(tmp_path, text, line, words):
    with pytest.raises(RulesError) as e:
        rules_from(tmp_path, text)
    msg = str(e.value)
    assert "rules.toml" in msg
    if line is not None:
        assert f"line {line}" in msg, msg
    for w in words:
        assert w in msg, msg


def test_kinds_the_detector_cannot_see_are_refused(tmp_path):
    with pytest.raises(RulesError, match="detector does not find"):
        rules_from(tmp_path, '[[rule]]\nforbid = ["text"]\n', known_kinds=["body_marker"])
    assert rules_from(tmp_path, '[[rule]]\nforbid = ["text"]\n', known_kinds=["text"])


def test_a_missing_or_binary_rules_file_is_one_sentence(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "none.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00rule")
    with pytest.raises(RulesError, match="not a UTF-8 text file"):
        load_rules(tmp_path / "bin.toml")
