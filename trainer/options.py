"""Click options shared by the commands that read labelled data (mlb-train, mlb-eval, mlb-export).

One declaration, so ``--layout``, ``--labels`` or ``--label-names`` mean the same thing, with
the same help, wherever labelled data is read (in the manner of sqlite-utils' option groups).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Sequence

import click

from mlbert.cli_common import split_names
from mlbert.io.formats import format_names


def labelled_data_options(subject: str = "files", exclude: Sequence[str] = (), prefix: str = "") -> Callable:
    """Decorator adding format, header, column and label-layout options for reading ``subject``.

    ``exclude`` drops options by destination name, e.g. ``label_names_file`` for mlb-export,
    whose label names come from the model being exported. ``prefix`` declares the same
    options for a second data set of the command (mlb-train's ``--intermediate-layout``
    etc.): flags ``--PREFIX-NAME``, destinations ``PREFIX_NAME``, help naming ``subject``.
    """
    ids_help = ("List layout with integer ids: the id of the model's first label (1 for XED)."
                if "label_names_file" in exclude else "The id of the first name in --label-names (1 for XED).")
    if prefix:
        ids_help = f"The id of the first name in --{prefix}-label-names."
    # (destination name, flags, click keywords): the name is what ``exclude`` matches and what the command receives.
    options = [
        ("format_", ["--format"], dict(type=click.Choice(format_names(tabular=True)),
                                       help=f"Format of {subject} when the extension does not say (needed for - on stdin).")),
        ("header", ["--header/--no-header"], dict(default=None, help=f"Whether {subject} "
                                                                      f"start{'' if subject.endswith('s') else 's'} "
                                                                      "with a header row (default: detect).")),
        ("text_column", ["--text-column"], dict(metavar="NAME|N", help="Column with the text (default: detect "
                                                                         "text/Tweet/sentence/...; headerless: 1-based index).")),
        ("id_column", ["--id-column"], dict(metavar="NAME|N", help="Column with row ids, excluded from the labels "
                                                                     "(default: detect id/ID).")),
        ("layout", ["--layout"], dict(type=click.Choice(["auto", "wide", "list"]), default="auto", show_default=True,
                                      help="wide: one 0/1 column per label. list: one column of label names or ids.")),
        ("labels", ["--labels"], dict(callback=split_names, metavar="A,B,C",
                                      help="Wide layout: the label columns (default: every column but text and id).")),
        ("label_column", ["--label-column"], dict(metavar="NAME|N", help="List layout: the column holding the labels.")),
        ("label_names_file", ["--label-names"], dict(metavar="FILE", type=click.Path(dir_okay=False),
                                                     help="Label names, one per line; list-layout ids index it (like "
                                                          "GoEmotions emotions.txt).")),
        ("label_id_base", ["--first-label-id"], dict(type=int, default=0, show_default=True, help=ids_help)),
    ]
    unknown = set(exclude) - {name for name, _, _ in options}
    if unknown:
        raise ValueError(f"labelled_data_options: no option named {', '.join(sorted(unknown))}")
    kept = [_option(name, flags, keywords, subject, prefix) for name, flags, keywords in options if name not in exclude]

    def decorate(command: Callable) -> Callable:
        for option in reversed(kept):
            command = option(command)
        return command

    return decorate


def _option(name: str, flags: List[str], keywords: Dict[str, Any], subject: str, prefix: str) -> Callable:
    """One click option, its flags and destination prefixed when ``prefix`` is given."""
    if not prefix:
        return click.option(*flags, name, **keywords)
    flags = ["/".join(f"--{prefix}-{f[2:]}" for f in flag.split("/")) for flag in flags]
    if subject not in keywords["help"]:
        keywords = dict(keywords, help=f"({subject}) {keywords['help']}")
    return click.option(*flags, f"{prefix.replace('-', '_')}_{name}", **keywords)


# Destination of each labelled-data option -> the ``read_labelled_file`` keyword it fills.
READ_KEYWORDS = {
    "format_": "format",
    "header": "header",
    "text_column": "text_column",
    "id_column": "id_column",
    "layout": "layout",
    "labels": "label_columns",
    "label_column": "label_column",
    "label_id_base": "label_id_base",
}


def read_options(values: Mapping[str, Any]) -> Dict[str, Any]:
    """``read_labelled_file`` keywords from a command's ``labelled_data_options`` values (the label
    names file apart: commands read it themselves); options left unset are left out."""
    return {keyword: values[name] for name, keyword in READ_KEYWORDS.items()
            if name in values and values[name] is not None}
