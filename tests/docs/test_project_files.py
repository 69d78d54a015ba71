"""The files a user or a citation tool reads first: licence, citation metadata, and pages
that cite nothing a reader cannot open and count what the code really makes."""

import os
import re

import yaml

from obiwan_h5.plot.figures import FIGURES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


def _project():
    """``license`` and ``version`` of pyproject.toml's [project] table (no tomllib on Python 3.10)."""
    table = _read("pyproject.toml").split("[project]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(license|version) = "([^"]+)"', table, re.MULTILINE))


def test_license_file_is_the_declared_bsd_3_clause():
    text = _read("LICENSE")
    assert _project()["license"] == "BSD-3-Clause"
    assert text.startswith("BSD 3-Clause License")
    assert re.search(r"Copyright \(c\) \d{4}, the obiwan_h5 developers", text)
    # the three clauses and the disclaimer, not a stub
    assert "Neither the name of the copyright holder" in text and "EVEN IF ADVISED OF THE POSSIBILITY" in text


def test_citation_cff_is_valid_cff_1_2_0_and_matches_the_package():
    citation = yaml.safe_load(_read("CITATION.cff"))
    # the keys CFF 1.2.0 requires, with the types its schema gives them
    assert citation["cff-version"] == "1.2.0"
    assert isinstance(citation["message"], str) and citation["message"].strip()
    assert isinstance(citation["title"], str) and "obiwan_h5" in citation["title"]
    assert isinstance(citation["authors"], list) and citation["authors"]
    for author in citation["authors"] + [a for ref in citation.get("references", []) for a in ref["authors"]]:
        assert set(author) & {"name", "family-names"}, f"a CFF author needs a name: {author}"
    assert citation["type"] in ("software", "dataset")
    assert citation["license"] == _project()["license"]
    assert str(citation["version"]) == _project()["version"]
    for reference in citation.get("references", []):
        assert {"type", "title", "authors"} <= set(reference)


def _tracked_text_files():
    """README, docs, the package, scripts and tests: every file a reader of the repository sees."""
    paths = ["README.md", "CHANGELOG.md", "Makefile", "pyproject.toml"]
    for top in ("docs", "obiwan_h5", "scripts", "tests"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            paths += [os.path.relpath(os.path.join(folder, name), ROOT) for name in names
                      if name.endswith((".md", ".py", ".ipynb", ".slurm", ".sh", ".txt", ".cff"))]
    return paths


def test_no_reference_to_a_specification_outside_the_repository():
    """The product specification is not part of the repository: nothing may send a reader to
    it ("SPEC §5"); what readers need from it is in docs/."""
    pattern = re.compile(r"\bSPEC\s*§|\bSPEC\b(?=[^\n]*§)|seed/000_")
    offenders = []
    for path in _tracked_text_files():
        if path == os.path.relpath(__file__, ROOT):
            continue
        for number, line in enumerate(_read(path).splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, "references to a document not in the repository:\n" + "\n".join(offenders)


def test_quickstart_counts_the_figures_the_code_makes():
    text = _read("docs", "quickstart.md")
    counts = [int(number) for number in re.findall(r"standard figures \((\d+) PNGs\)", text)]
    assert counts == [len(FIGURES)], (
        f"docs/quickstart.md says {counts} figures; obiwan_h5.plot.figures.FIGURES has {len(FIGURES)}")
    # no other count of figures that could drift
    assert not re.search(r"\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+) of the "
                         r"(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+)\b", text)


# each difference found by running the old derived_tables.py / merge_tables.py side by side
# (issue 25), and words its row of docs/migration.md must hold
MIGRATION_ROWS = {
    "0-row per-brick summary.fits": ("0 rows", "`<b>galdepth`"),
    "DR3 summaries and --randoms_subset failed": ("DR3", "`--randoms_subset`", "failed"),
    "row order inside a brick": ("row order inside a brick", "canonical order"),
    "psql columns of the old SQL": ("`psql_*`", "`psql_e1`", "11 columns"),
    "summary dtypes widened": ("int32 (`i4`)", "int16 (`i2`", "int64 (`i8`)", "float64 (`f8`)"),
    "depth_at_half when the last bin is empty": ("25.8", "NaN"),
    "depth_at_half bin edges": ("`(low, high]`", "`[low, high)`", "float32", "float64"),
    "DESI cut with an infinite g flux": ("infinite g flux", "`mw_transmission_g` = 0"),
}


def test_migration_table_lists_every_known_difference():
    text = _read("docs", "migration.md")
    table = text.split("## Every difference from the old numbers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| old")]
    for difference, words in MIGRATION_ROWS.items():
        assert any(all(word in row for word in words) for row in rows), (
            f"docs/migration.md: no row of the difference table explains {difference} ({words})")
    # four columns each: old, new, why, how to get the old number
    assert all(row.replace("\\|", "").count("|") == 5 for row in rows)
