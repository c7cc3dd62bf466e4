"""The policy format's JSON Schema, the shipped sample and the examples of
docs/POLICY.md agree with each other and with the real agent:

- data/policy.schema.json is a valid draft 2020-12 schema;
- data/policy.sample.json and every JSON example in docs/POLICY.md validate
  against it, and the agent's loader accepts them;
- every `$ shoji explain ...` transcript in docs/POLICY.md is what the real
  binary prints for the doc's example policy (so the docs stay true);
- a misspelt key is refused by both the schema and the loader.
"""
import json
import os
import re
import shutil
import subprocess

import jsonschema
import pytest

from helpers.agent import REPO, sanitizer_env, shoji_bin

SCHEMA = os.path.join(REPO, "data", "policy.schema.json")
SAMPLE = os.path.join(REPO, "data", "policy.sample.json")
DOC = os.path.join(REPO, "docs", "POLICY.md")

# The category database the doc's examples assume.
DOC_CATEGORIES = {
    "gambling": "casino.example", "bank": "mybank.example", "games": "games.example",
    "webmail": "mail.example", "social_networks": "social.example", "press": "news.example",
}


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def doc_json_examples():
    text = open(DOC, encoding="utf-8").read()
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]


def validator():
    schema = load_json(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def compile_categories(tmp_path, db_path):
    lists = tmp_path / "lists"
    for cat, host in DOC_CATEGORIES.items():
        (lists / cat).mkdir(parents=True, exist_ok=True)
        (lists / cat / "domains").write_text(host + "\n")
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    r = subprocess.run([shoji_bin(), "catdb", "compile", str(lists), "-o", str(db_path)],
                       capture_output=True, text=True, env=sanitizer_env(), timeout=60)
    assert r.returncode == 0, r.stderr


def explain(args, policy, cwd):
    r = subprocess.run([shoji_bin(), "explain", *args, "--policy", str(policy)], capture_output=True,
                       text=True, env=sanitizer_env(), cwd=cwd, timeout=60)
    return r


def test_sample_and_doc_examples_validate_against_the_schema():
    v = validator()
    v.validate(load_json(SAMPLE))
    examples = doc_json_examples()
    assert len(examples) >= 3
    for ex in examples:
        v.validate(ex)


def test_misspelt_key_is_refused_by_schema_and_loader(tmp_path):
    bad = {"decode": {"exclude_host": ["a.example"]}}
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(bad)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad, indent=1))
    r = explain(["https://a.example/"], p, tmp_path)
    assert r.returncode == 1
    assert "bad.json:3: key `decode.exclude_host`: unknown key (did you mean `exclude_hosts`?)" in r.stderr


def test_agent_loads_the_sample_policy(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "policy.sample.json")
    compile_categories(tmp_path, tmp_path / "state" / "categories.db")
    r = explain(["https://osce.icrc.trendmicro.com/", "--json"], tmp_path / "data" / "policy.sample.json", tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["result"] == "tunnel"
    assert out["rule"] == 'decode.exclude_hosts[0] "*icrc.trendmicro.com" matched host osce.icrc.trendmicro.com'


def test_agent_loads_every_doc_example(tmp_path):
    compile_categories(tmp_path, tmp_path / "categories.db")
    for i, ex in enumerate(doc_json_examples()):
        p = tmp_path / f"example{i}.json"
        p.write_text(json.dumps(ex))
        r = explain(["https://www.example.com/"], p, tmp_path)
        assert r.returncode == 0, f"example {i}: {r.stderr}"


def doc_transcripts():
    """(argv, [expected lines]) for every `$ shoji explain` in the doc."""
    out, cur = [], None
    for line in open(DOC, encoding="utf-8"):
        s = line.strip()
        if s.startswith("$ shoji explain "):
            cur = (re.findall(r'"[^"]*"|\S+', s[len("$ shoji explain "):]), [])
            cur = ([a.strip('"') for a in cur[0]], cur[1])
            out.append(cur)
        elif cur and s and not s.startswith("```") and line.startswith("        "):
            cur[1].append(s)
        else:
            cur = None
    return out


def test_doc_transcripts_are_what_explain_prints(tmp_path):
    compile_categories(tmp_path, tmp_path / "categories.db")
    policy = doc_json_examples()[0]
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(policy))
    transcripts = doc_transcripts()
    assert len(transcripts) >= 10
    for argv, expected in transcripts:
        r = explain(argv, p, tmp_path)
        assert r.returncode == 0, r.stderr
        got = [l.strip() for l in r.stdout.splitlines()]
        for e in expected:
            if e.startswith("$ "):
                continue
            assert any(g.startswith(e) for g in got), f"{argv}: {e!r} not in\n{r.stdout}"
