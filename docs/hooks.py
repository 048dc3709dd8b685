"""MkDocs hooks (``hooks:`` in mkdocs.yml): what the pages take from the repository when the site is built.

- ``<!-- zoo-table -->`` in a page becomes the table of the shipped zoo entries, made from
  their cards by :func:`keras_sysid.zoo.presets` (so it cannot drift from the cards).
- ``<!-- include FILE -->`` becomes the text of FILE, a path from the repository root
  (the changelog page shows CHANGELOG.md).
- The figures under ``results/`` (written there by the commands that made them) are
  published at ``figures/...``, so a page shows ``figures/insilico/mouse_v1_meis.png``.
"""

from __future__ import annotations

import os
import re

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = "results"
_INCLUDE = re.compile(r"^<!-- include (\S+) -->$", re.MULTILINE)


def on_files(files, config):
    for folder, _, names in os.walk(os.path.join(ROOT, FIGURES)):
        for name in sorted(names):
            if name.endswith((".png", ".svg")):
                source = os.path.join(folder, name)
                uri = "figures/" + os.path.relpath(source, os.path.join(ROOT, FIGURES)).replace(os.sep, "/")
                files.append(File.generated(config, uri, abs_src_path=source))
    return files


def _metrics(metrics: dict) -> str:
    if "corr_single" in metrics:
        return (f"corr {metrics['corr_single']:.3f} single trial / {metrics['corr_avg']:.3f} repeat-averaged, "
                f"FEVE {metrics['feve']:.3f}, {metrics['frac_oracle']:.3f} of oracle")
    if "fev" in metrics:
        return f"FEV {metrics['fev']:.3f}, RF error {metrics['rf_error_px']:.2f} px"
    if "max_abs_error_vs_numpy_truth" in metrics:
        return f"exact (largest difference from the NumPy truth {metrics['max_abs_error_vs_numpy_truth']:.1e})"
    return ", ".join(f"{key} {value}" for key, value in metrics.items())


def zoo_table() -> str:
    """The zoo entries as a Markdown table: name, what, neurons and image, test metrics, size, licence."""
    from keras_sysid import zoo

    rows = ["| entry | what | neurons, image | test metrics (from its card) | size | licence |",
            "|---|---|---|---|---:|---|"]
    for entry in zoo.presets():
        size = sum(os.path.getsize(os.path.join(entry["folder"], name)) for name in os.listdir(entry["folder"]))
        height, width = entry["image_shape"][:2]
        licence = entry["licence"] or "not stated"
        rows.append(f"| `{entry['name']}` | {entry['description']} | {entry['n_neurons']}, {height}x{width} | "
                    f"{_metrics(entry['metrics'] or {})} | {size / 1e6:.1f} MB | {licence} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if "<!-- zoo-table -->" in markdown:
        markdown = markdown.replace("<!-- zoo-table -->", zoo_table())

    def include(match):
        with open(os.path.join(ROOT, match.group(1)), encoding="utf-8") as file:
            text = file.read()
        # The included file's own title would be a second title on the page.
        return re.sub(r"\A# .*\n", "", text)

    return _INCLUDE.sub(include, markdown)
