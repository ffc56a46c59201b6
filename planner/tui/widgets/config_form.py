"""A form generated from a pydantic model: one input per field, errors shown under each.

A plugin's ``Config`` model is the single description of what a source kind needs, so the
form is built from ``Config.model_fields`` (type, default, required) and the fields'
attribute docstrings; validation is the model's own, its messages placed under the field
they concern.
"""

from __future__ import annotations

import ast
import enum
import inspect
import itertools
import json
import textwrap
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static, Switch

from planner.errors import UnitError
from planner.units import parse_quantity


@cache
def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """The attribute docstrings of a model's fields (the string right after each field).

    Pydantic keeps them only with ``use_attribute_docstrings``; plugin configs are written
    with them either way, so they are read from the source, base classes first.
    """
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return annotation, optional
    return annotation, False


def _base(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def field_shape(info: FieldInfo) -> tuple[str, Any, bool]:
    """How to edit a field: (widget shape, choices or element type, optional).

    Shapes: ``bool`` (a switch), ``choice`` (a select over the choices), ``list`` (comma
    separated text), ``number`` (float or int, also accepting ``40B``-style quantities),
    ``json`` (anything structured) and ``text``.
    """
    annotation, optional = _strip_optional(_base(info.annotation))
    annotation = _base(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool", None, optional
    if origin is Literal:
        return "choice", tuple(typing.get_args(annotation)), optional
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(m.value for m in annotation), optional
    if origin in (list, tuple, set, frozenset):
        return "list", None, optional
    if annotation in (int, float):
        return "number", annotation, optional
    if annotation is str:
        return "text", None, optional
    if origin in (dict, Mapping) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "json", None, optional
    return "text", None, optional


def _default_text(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined:
        if info.default_factory is None:
            return ""
        try:
            default = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return ""
    return value_text(default)


def value_text(value: Any) -> str:
    """A stored value as the form shows it."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


class ConfigForm(VerticalScroll):
    """Inputs for every field of ``model``; :meth:`validated` checks them with the model.

    Field widgets have ids ``field-<name>``; errors appear in ``error-<name>``.
    """

    DEFAULT_CSS = """
    ConfigForm {
        height: auto;
        max-height: 100%;
    }
    ConfigForm .form-field {
        height: auto;
        margin-bottom: 1;
    }
    ConfigForm .form-label {
        text-style: bold;
    }
    ConfigForm .form-label.required {
        color: $text-warning;
    }
    ConfigForm .form-doc {
        color: $text-muted;
    }
    ConfigForm .form-error {
        color: $error;
        display: none;
    }
    ConfigForm .form-error.shown {
        display: block;
    }
    ConfigForm Input.-invalid-field {
        border: tall $error;
    }
    """

    def __init__(
        self,
        model: type[BaseModel],
        values: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.model = model
        self.initial = dict(values or {})

    def compose(self) -> ComposeResult:
        docs = field_docs(self.model)
        fields = self.model.model_fields
        # Required fields first: they are what a person must fill in.
        order = sorted(fields, key=lambda n: not fields[n].is_required())
        for name in order:
            info = fields[name]
            shape, choices, optional = field_shape(info)
            with Vertical(classes="form-field", id=f"wrap-{name}"):
                label = name + (" *" if info.is_required() else "")
                yield Label(
                    label, classes="form-label" + (" required" if info.is_required() else "")
                )
                yield self._editor(name, info, shape, choices, optional)
                hint = docs.get(name) or info.description or ""
                if shape == "list":
                    hint = (hint + " (comma-separated)").strip()
                if hint:
                    yield Static(hint, classes="form-doc", markup=False)
                yield Static("", classes="form-error", id=f"error-{name}", markup=False)

    def _editor(self, name: str, info: FieldInfo, shape: str, choices: Any, optional: bool):
        wid = f"field-{name}"
        given = name in self.initial
        text = value_text(self.initial[name]) if given else _default_text(info)
        if shape == "bool":
            value = bool(self.initial[name]) if given else bool(info.default is True)
            return Switch(value=value, id=wid)
        if shape == "choice":
            options = [(str(c), c) for c in choices]
            current = self.initial.get(name, info.default)
            if isinstance(current, enum.Enum):
                current = current.value
            value = current if current in choices else Select.BLANK
            return Select(
                options, value=value, allow_blank=optional or value is Select.BLANK, id=wid
            )
        placeholder = "required" if info.is_required() else ("optional" if optional else "")
        return Input(value=text, placeholder=placeholder, id=wid)

    # ------------------------------------------------------------------ values
    def raw_values(self) -> dict[str, Any]:
        """What the person entered, converted as far as the field types say.

        Empty optional inputs are left out (so the model's default applies); numbers accept
        quantities such as ``40B`` or ``$30k``; lists are comma-separated.
        """
        raw: dict[str, Any] = {}
        for name, info in self.model.model_fields.items():
            shape, _choices, _optional = field_shape(info)
            widget = self.query_one(f"#field-{name}")
            if isinstance(widget, Switch):
                raw[name] = widget.value
                continue
            if isinstance(widget, Select):
                if widget.value is not Select.BLANK:
                    raw[name] = widget.value
                continue
            assert isinstance(widget, Input)
            text = widget.value.strip()
            if not text:
                continue
            if shape == "list":
                raw[name] = [p.strip() for p in text.split(",") if p.strip()]
            elif shape == "number":
                raw[name] = _number(text)
            elif shape == "json":
                try:
                    raw[name] = json.loads(text)
                except json.JSONDecodeError:
                    raw[name] = text  # the model reports it
            else:
                raw[name] = text
        return raw

    def validated(self) -> BaseModel | None:
        """The model built from the inputs, or None after showing each field's error."""
        self.clear_errors()
        try:
            return self.model.model_validate(self.raw_values())
        except ValidationError as e:
            self.show_errors(e)
            return None

    def show_errors(self, error: ValidationError) -> None:
        """Put each of pydantic's messages under the field it concerns."""
        general: list[str] = []
        per_field: dict[str, list[str]] = {}
        for err in error.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]) if loc else ""
            msg = err.get("msg", "invalid")
            if err.get("type") == "missing":
                msg = "required: fill this in"
            if name in self.model.model_fields:
                per_field.setdefault(name, []).append(msg)
            else:
                general.append(f"{name}: {msg}" if name else msg)
        first = None
        for name, msgs in per_field.items():
            box = self.query_one(f"#error-{name}", Static)
            box.update("; ".join(dict.fromkeys(msgs)))
            box.add_class("shown")
            self.query_one(f"#field-{name}").add_class("-invalid-field")
            first = first or name
        if general:
            self.notify("; ".join(general), severity="error", title="Invalid configuration")
        if first is not None:
            widget = self.query_one(f"#field-{first}")
            widget.focus()
            self.scroll_to_widget(widget)

    def clear_errors(self) -> None:
        for box in self.query(".form-error"):
            box.remove_class("shown")
        for widget in self.query(".-invalid-field"):
            widget.remove_class("-invalid-field")

    def error_text(self, name: str) -> str:
        """The error shown under ``name`` (empty when none), for tests and screen readers."""
        box = self.query_one(f"#error-{name}", Static)
        return str(box.content) if box.has_class("shown") else ""


def _number(text: str) -> Any:
    """``3`` → 3, ``1e9`` → 1e9, ``40B`` → 4e10, ``$30k`` → 30000; otherwise the text, which
    the model then rejects with its own message."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_quantity(text, default_unit=None).value
    except UnitError:
        return text
