"""The configuration page (config/README.md) against the schemas and the configs it describes, the
links of the README and of that page, and the Snakemake workflow catalog's settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "config" / "README.md"
CATALOG = REPO / ".snakemake-workflow-catalog.yml"
# the names the page's "set in" column uses
CONFIGS = {"demo": "config.yaml", "paper": "configs/genda2025.yaml", "CI": "tests/config/ci.yaml"}
ANY_NAME = "{}"  # a name the user chooses (a resource, a TTS system, a data size)


def load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def schema_keys(node: dict, defs: dict, prefix: tuple = (), required: bool = False):
    """(dotted key, its schema, required in its parent) for every key a config can hold."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    entries = node.get("additionalProperties")
    if "properties" in node:
        for name, child in node["properties"].items():
            yield from schema_keys(child, defs, (*prefix, name), name in node.get("required", []))
        for branch in ("then", "else"):  # keys that only some values allow (if/then)
            if "properties" in node.get(branch, {}):
                yield from schema_keys(node[branch], defs, prefix, required)
    elif isinstance(entries, dict) and ("properties" in entries or "$ref" in entries):
        yield from schema_keys(entries, defs, (*prefix, ANY_NAME), required)
    else:
        yield ".".join(prefix), node, required


def config_schema_keys() -> dict[str, tuple[dict, bool]]:
    schema = load("schemas/config.schema.yaml")
    return {key: (node, required) for key, node, required in schema_keys(schema, schema["$defs"])}


def section(text: str, title: str) -> str:
    """The text under `## title`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{PAGE}: no section '## {title}'"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, as stripped cells."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in row] for row in rows]
    return [row for row in rows if not set("".join(row)) <= set("-: ") and row[0] not in ("key", "column", "config")]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_keys() -> list[tuple[list[str], list[str]]]:
    """(the keys of a row, the row) for each row of the page's key tables; user-chosen names as {}."""
    rows = table_rows(section(PAGE.read_text(), "Config keys"))
    return [([re.sub(r"\{[^}]*\}", ANY_NAME, key) for key in code_spans(row[0])], row) for row in rows]


def config_sets(config: dict, key: str) -> bool:
    """Whether the config writes the key (for {}: under any name)."""
    nodes = [config]
    for part in key.split("."):
        nodes = [value for node in nodes if isinstance(node, dict)
                 for name, value in node.items() if part in (name, ANY_NAME)]
    return bool(nodes)


def test_the_page_documents_every_schema_key_and_no_other():
    schema = set(config_schema_keys())
    page = [key for keys, _ in documented_keys() for key in keys]
    assert sorted(schema - set(page)) == [], "schema keys missing from config/README.md"
    assert sorted(set(page) - schema) == [], "config/README.md names keys the schema lacks"
    assert len(page) == len(set(page)), "a key is documented twice"


def test_defaults_and_required_keys_on_the_page_are_the_schema_s():
    schema = config_schema_keys()
    for keys, row in documented_keys():
        for key in keys:
            node, required = schema[key]
            if "default" in node:
                spans = code_spans(row[2])
                assert spans and yaml.safe_load(spans[0]) == node["default"], (key, row[2], node["default"])
            elif required:
                assert row[2] == "required", (key, row[2])


def test_set_in_names_the_configs_that_write_the_key():
    configs = {name: load(path) for name, path in CONFIGS.items()}
    for keys, row in documented_keys():
        writers = {name for name, config in configs.items() if any(config_sets(config, key) for key in keys)}
        named = set(re.findall(r"\b(?:demo|paper|CI)\b", row[3]))
        assert named == writers, f"{keys}: the page says set in {sorted(named)}, the configs {sorted(writers)}"


def test_the_page_documents_every_speaker_sheet_column_and_no_other():
    columns = set(load("schemas/speakers.schema.yaml")["properties"])
    documented = {code_spans(row[0])[0] for row in table_rows(section(PAGE.read_text(), "Speaker sheet"))}
    assert documented == columns


def test_learning_rates_on_the_page_are_the_configs():
    rows = table_rows(section(PAGE.read_text(), "Learning rates"))
    listed = set()
    for row in rows:
        for path in code_spans(row[0]):
            assert (REPO / path).is_file(), path
            assert load(path)["finetune"]["lr"] == float(row[1]), (path, row[1])
            listed.add(path)
    assert set(CONFIGS.values()) <= listed


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_links_of_the_readme_and_the_config_page_resolve():
    for page in (REPO / "README.md", PAGE):
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.relative_to(REPO)}: link to {target}: no such file"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
                assert anchor in {github_anchor(h) for h in headings}, f"{page.relative_to(REPO)}: link to {target}: no such heading"


def test_catalog_settings_parse_and_name_files_that_exist():
    settings = yaml.safe_load(CATALOG.read_text())
    usage = settings["usage"]
    deployment = usage["software-stack-deployment"]
    assert set(deployment) <= {"conda", "apptainer", "apptainer+conda"} and any(deployment.values())
    assert all(isinstance(value, bool) for value in deployment.values())
    assert isinstance(usage["mandatory-flags"]["desc"], str)
    if usage.get("report"):
        assert re.search(r'^report: "report/workflow.rst"', (REPO / "Snakefile").read_text(), re.MULTILINE)
        assert (REPO / "report" / "workflow.rst").is_file()
    if deployment.get("conda"):
        assert any((REPO / "envs").glob("*.yaml"))
    # what the catalog looks for: a Snakefile, rule modules ending in .smk, a README naming
    # snakemake and workflow, and the configuration page
    assert (REPO / "Snakefile").is_file() and any((REPO / "rules").glob("*.smk"))
    readme = (REPO / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme
    assert PAGE.is_file()
    # every path the settings name (in their text or comments) exists
    words = re.split(r"[\s,;()]+", CATALOG.read_text())
    paths = [w.rstrip(".:") for w in words if "://" not in w and not w.startswith("-")
             and ("/" in w or re.search(r"\.(ya?ml|md|py|toml|rst)\.?$", w))]
    assert paths, "the catalog settings name no file"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"{CATALOG.name} names files that do not exist: {missing}"
