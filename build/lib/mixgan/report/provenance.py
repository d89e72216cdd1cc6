"""The provenance page of the HTML report: config, code, packages, weights, stand-in labels.

``provenance_page`` renders reStructuredText; ``rst_to_html`` turns it into a standalone HTML
page (docutils, which Snakemake itself depends on), the form Snakemake's ``--report`` shows
inline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mixgan.io import read_json, sha256_file
from mixgan.provenance import code_version, package_versions
from mixgan.registry import DEMO_SCALE, LABEL_MEANINGS, PROCEDURAL_DATA, STAND_IN_FEATURES


def rst_escape(text: str) -> str:
    """Escape the characters inline reStructuredText markup would read."""
    return re.sub(r"([\\`*_|])", r"\\\1", str(text))


def feature_networks(weights_dir: Path) -> list[dict[str, Any]]:
    """The weight records (``<file>.json``) in ``weights_dir``, each with a checked checksum.

    ``check`` is ``verified`` (the file's SHA-256 equals its record's), ``MISMATCH`` or
    ``file missing``.
    """
    networks = []
    for path in sorted(Path(weights_dir).glob("*.json")):
        record = read_json(path)
        if not isinstance(record, dict) or "sha256" not in record:
            continue
        weights = path.with_name(record.get("file") or path.stem)
        if not weights.is_file():
            check = "file missing"
        else:
            check = "verified" if sha256_file(weights) == record["sha256"] else "MISMATCH"
        networks.append({**record, "file": weights.name, "check": check})
    return networks


def standin_labels(config: dict[str, Any], networks: list[dict[str, Any]]) -> list[str]:
    """The stand-in labels in force for this config and these weights, each explained."""
    labels = []
    if config.get("scale") == "demo":
        labels.append(f"{DEMO_SCALE}: {LABEL_MEANINGS[DEMO_SCALE]}")
    procedural = sorted(
        name
        for name, dataset in config.get("datasets", {}).items()
        if dataset.get("format") == "procedural"
    )
    if procedural:
        labels.append(
            f"{PROCEDURAL_DATA} ({', '.join(procedural)}): " + LABEL_MEANINGS[PROCEDURAL_DATA]
        )
    stand_ins = [n["file"] for n in networks if n.get("stand_in")]
    if stand_ins:
        labels.append(
            f"{STAND_IN_FEATURES} ({', '.join(stand_ins)}): {LABEL_MEANINGS[STAND_IN_FEATURES]}"
        )
    if config.get("weights", {}).get("allow_standins"):
        labels.append(
            "weights.allow_standins is on: a metric whose weights are missing runs on a "
            "stand-in network and its values carry the label 'stand-in features'"
        )
    if config.get("device") == "cpu":
        labels.append("device cpu: cost metrics are CPU-process hours, labelled 'not a GPU'")
    return labels


def _list_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *rows]:
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" for cell in cells[1:]]
    return [*lines, ""]


def _section(title: str) -> list[str]:
    return [title, "-" * len(title), ""]


def provenance_page(
    config: dict[str, Any], weights_dir: Path, config_source: str | None = None
) -> str:
    """The provenance page as reStructuredText.

    Study name and scale, code version, package versions, the feature networks in
    ``weights_dir`` with their checksums, the stand-in labels in force, and the config as YAML.
    """
    networks = feature_networks(weights_dir)
    name = config.get("study", "?")
    title = f"Provenance of study {name}"
    out = ["=" * len(title), title, "=" * len(title), ""]
    out += [
        f":Study: {rst_escape(name)}",
        f":Description: {rst_escape(config.get('description', ''))}",
        f":Scale: {rst_escape(config.get('scale', '?'))}",
        f":Code version: ``{code_version()}``",
        f":Config: ``{config_source}``" if config_source else ":Config: (given inline)",
        "",
    ]
    out += _section("Stand-in labels in force")
    labels = standin_labels(config, networks)
    out += [f"- {rst_escape(label)}" for label in labels] or ["None: every value is real."]
    out += [""]
    out += _section("Feature networks")
    for network in networks:
        heading = f"``{network['file']}``"
        out += [heading, "~" * len(heading), ""]
        out += [
            f":Network: {rst_escape(network.get('name', ''))}",
            f":SHA-256: ``{network['sha256']}``",
            f":Checksum: {rst_escape(network['check'])}",
            f":Stand-in: {'yes' if network.get('stand_in') else 'no'}",
            f":Source: {rst_escape(network.get('source', ''))}",
        ]
        if network.get("note"):
            out.append(f":Note: {rst_escape(network['note'])}")
        out.append("")
    if not networks:
        out += [f"No weight records (``*.json``) in ``{weights_dir}``.", ""]
    out += _section("Package versions")
    versions = package_versions()
    out += _list_table(
        ["package", "version"], [[rst_escape(k), f"``{v}``"] for k, v in versions.items()]
    )
    out += _section("Configuration")
    out += ["::", ""]
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    out += [f"   {line}" if line else "" for line in text.splitlines()]
    return "\n".join(out) + "\n"


def rst_to_html(rst: str) -> str:
    """A standalone HTML page of ``rst``; any reStructuredText warning is an error."""
    from docutils.core import publish_string
    from docutils.writers.html5_polyglot import Writer

    return publish_string(
        rst,
        writer=Writer(),
        settings_overrides={"halt_level": 2, "output_encoding": "unicode", "report_level": 2},
    )
