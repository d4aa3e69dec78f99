"""Audit rules: which annotation kinds an image must, must not, or may carry, per study, series or folder."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from synth.kinds import CLASS_IDS
from train.dicom import READABLE_KEYS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

RULE_KEYS = ("name", "match", "require", "forbid", "allow", "min_confidence")
"""Keys a [[rule]] table may hold (docs/audit.md describes each)."""

PATH_KEYS = ("path",)
"""Match keys that look at the file's path, not its DICOM header: they match plain images too."""

VERDICTS = ("pass", "fail", "unmatched")
"""An image passes when every rule that matches it holds, fails when one does not, and is unmatched when no
rule applies to it."""


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and its line where known."""


@dataclass(frozen=True)
class Rule:
    """One [[rule]] of a rules file.

    match: (key, DICOM keyword or None for a path key, glob patterns); every key must match (any of its
        patterns, case-insensitive). No match keys: the rule applies to every image.
    require / forbid: kinds that must be present / absent. allow: when given, the only kinds that may be
        present besides the required ones. min_confidence: a kind counts as present only with a detection
        at least this confident.
    """

    name: str
    line: int | None
    match: tuple[tuple[str, str | None, tuple[str, ...]], ...] = ()
    require: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    allow: tuple[str, ...] | None = None
    min_confidence: float = 0.0
    kinds_used: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dicom_only(self) -> bool:
        """True when the rule has a DICOM condition: then it never matches a plain image."""
        return any(kw is not None for _, kw, _ in self.match)

    def label(self) -> str:
        return f"{self.name} (line {self.line})" if self.line else self.name


def _rule_lines(text: str) -> list[int]:
    """1-based line numbers of the [[rule]] headers, in order."""
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*rule\s*\]\]", line)]


def _line_of(text: str, start: int | None, end: int | None, needle: str) -> int | None:
    """The first line in [start, end) (1-based) that holds `needle` as a key or a quoted value."""
    if start is None:
        return None
    lines = text.splitlines()
    pat = re.compile(rf"(^|[\s{{,.])({re.escape(needle)})\s*=|[\"']{re.escape(needle)}[\"']")
    for i in range(start - 1, min(end or len(lines), len(lines))):
        if pat.search(lines[i].split("#", 1)[0]):
            return i + 1
    return start


def _keyword_known(key: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(key) is not None


def load_rules(path: str | Path, known_kinds: list[str] | None = None) -> list[Rule]:
    """Parse a rules file (TOML: an array of [[rule]] tables). RulesError naming the file, the rule and its
    line for syntax errors, unknown keys or kinds, and (with known_kinds, the kinds the detector reports)
    kinds the detector cannot see."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RulesError(f"{path}: cannot read the rules file ({e.strerror or e}).") from e
    except UnicodeDecodeError as e:
        raise RulesError(f"{path}: not a UTF-8 text file; write the rules as TOML (see docs/audit.md).") from e
    if tomllib is None:
        raise RulesError(f"{path}: reading rules files needs Python 3.11 or later (tomllib).")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{path}: TOML syntax error: {e}. Fix it (see docs/examples/rules.toml).") from e
    extra = sorted(set(doc) - {"rule"})
    if extra:
        line = _line_of(text, 1, None, extra[0])
        raise RulesError(f"{path}, line {line}: unknown top-level key {extra[0]!r}; a rules file holds only "
                         "[[rule]] tables.")
    tables = doc.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{path}: 'rule' must be an array of tables: write each rule under a [[rule]] header.")
    if not tables:
        raise RulesError(f"{path}: no rules; add at least one [[rule]] table (see docs/examples/rules.toml).")
    starts = _rule_lines(text)
    starts = starts if len(starts) == len(tables) else [None] * len(tables)
    rules = []
    for i, t in enumerate(tables):
        start, end = starts[i], (starts[i + 1] if i + 1 < len(starts) else None)
        name = t.get("name", f"rule {i + 1}")

        def fail(msg: str, needle: str | None = None) -> RulesError:
            line = _line_of(text, start, end, needle) if needle else start
            at = f"{path}, line {line}" if line else str(path)
            return RulesError(f"{at}: rule {name!r}: {msg}")

        if not isinstance(name, str) or not name.strip():
            raise fail("'name' must be a non-empty string.", "name")
        if any(r.name == name.strip() for r in rules):
            raise fail("another rule has this name; give each rule its own (the summary counts failures by name).",
                       "name")
        for key in t:
            if key not in RULE_KEYS:
                raise fail(f"unknown key {key!r}; a rule takes {', '.join(RULE_KEYS)}.", key)
        match = t.get("match", {})
        if not isinstance(match, dict):
            raise fail("'match' must be a table, e.g. match = { body_part = \"BREAST\" }.", "match")
        conds = []
        for key, value in match.items():
            if key in PATH_KEYS:
                keyword = None
            elif key in READABLE_KEYS:
                keyword = READABLE_KEYS[key]
            elif _keyword_known(key):
                keyword = key
            else:
                raise fail(f"unknown match key {key!r}; use {', '.join(PATH_KEYS + tuple(READABLE_KEYS))} or a DICOM "
                           "keyword such as BodyPartExamined.", key)
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise fail(f"match key {key!r} takes a string or a non-empty list of strings (glob patterns).", key)
            conds.append((key, keyword, tuple(values)))
        lists = {}
        for key in ("require", "forbid", "allow"):
            if key not in t:
                continue
            values = t[key]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise fail(f"{key!r} takes a list of kinds, e.g. {key} = [\"body_marker\"].", key)
            for v in values:
                if v not in CLASS_IDS:
                    raise fail(f"unknown kind {v!r} in {key!r}; kinds are {', '.join(CLASS_IDS)}.", v)
                if known_kinds is not None and v not in known_kinds:
                    raise fail(f"{key!r} names {v!r}, which the detector does not find (it reports "
                               f"{', '.join(known_kinds) or 'no kinds'}); use a detector trained on {v} or drop it.", v)
            lists[key] = tuple(values)
        both = set(lists.get("require", ())) & set(lists.get("forbid", ()))
        if both:
            raise fail(f"{', '.join(sorted(both))} is both required and forbidden.", sorted(both)[0])
        if not any(k in lists for k in ("require", "forbid", "allow")):
            raise fail("says nothing about kinds: give require, forbid and/or allow.")
        conf = t.get("min_confidence", 0.0)
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
            raise fail("'min_confidence' must be a number from 0 to 1.", "min_confidence")
        used = tuple(sorted({k for v in lists.values() for k in v}))
        rules.append(Rule(name=name.strip(), line=start, match=tuple(conds), require=lists.get("require", ()),
                          forbid=lists.get("forbid", ()), allow=lists.get("allow"), min_confidence=float(conf),
                          kinds_used=used))
    return rules


def require_known_kinds(rules: list[Rule], kinds: list[str], source: str = "rules") -> None:
    """RulesError for a rule that names a kind the detector does not report (it could never fail or pass)."""
    for r in rules:
        unknown = [k for k in r.kinds_used if k not in kinds]
        if unknown:
            at = f"{source}, line {r.line}" if r.line else source
            raise RulesError(f"{at}: rule {r.name!r} names {', '.join(unknown)}, which the detector does not find "
                             f"(it reports {', '.join(kinds) or 'no kinds'}); use a detector trained on it or drop it "
                             "from the rule.")


def rule_keywords(rules: list[Rule]) -> list[str]:
    """DICOM keywords the rules match on (for reading them from each file's header)."""
    return sorted({kw for r in rules for _, kw, _ in r.match if kw is not None})


def _glob(value: str, patterns: tuple[str, ...]) -> bool:
    v = value.casefold()
    return any(fnmatch.fnmatchcase(v, p.casefold()) for p in patterns)


def matches(rule: Rule, paths: tuple[str, ...], dicom: dict[str, str] | None) -> bool:
    """Does `rule` apply to an image? paths: the file as given and relative to its input folder (a path glob
    may match either); dicom: its header attributes by DICOM keyword, or None for a plain image."""
    for key, keyword, patterns in rule.match:
        if keyword is None:
            if not any(_glob(p, patterns) for p in paths):
                return False
        elif dicom is None or keyword not in dicom or not _glob(dicom[keyword], patterns):
            return False
    return True


def present_kinds(kinds: dict[str, dict], min_confidence: float = 0.0) -> set[str]:
    """Kinds with a detection at least min_confidence confident (kinds: the inventory of one image)."""
    return {k for k, v in kinds.items() if v.get("confidence", 1.0) >= min_confidence}


def violations(rule: Rule, kinds: dict[str, dict]) -> list[str]:
    """Why an image the rule applies to breaks it (empty when it holds)."""
    have = present_kinds(kinds, rule.min_confidence)
    out = [f"missing {k}" for k in rule.require if k not in have]
    out += [f"has {k} (forbidden)" for k in rule.forbid if k in have]
    if rule.allow is not None:
        ok = set(rule.allow) | set(rule.require)
        out += [f"has {k} (not allowed)" for k in sorted(have - ok)]
    return out


def check(rules: list[Rule], kinds: dict[str, dict], paths: tuple[str, ...], dicom: dict[str, str] | None
          ) -> tuple[str, list[str], list[str], list[str]]:
    """(verdict, failures as 'RULE: reason', names of the rules that matched, names of those that failed) for
    one image or frame."""
    matched, failed, failures = [], [], []
    for rule in rules:
        if not matches(rule, paths, dicom):
            continue
        matched.append(rule.name)
        why = violations(rule, kinds)
        if why:
            failed.append(rule.name)
            failures += [f"{rule.name}: {w}" for w in why]
    verdict = "unmatched" if not matched else ("fail" if failures else "pass")
    return verdict, failures, matched, failed
