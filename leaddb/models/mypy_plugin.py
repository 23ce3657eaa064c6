"""A mypy plugin that types the Update schemas ``@patch_of(Base)`` builds at run time.

Python's type system cannot say "the fields of ``LeadBase``, each optional": without this plugin
``LeadUpdate(score=80)`` is a type error and ``patch.score`` is ``Any``. Enable it where
leaddb's schemas are type-checked::

    [tool.mypy]
    plugins = ["leaddb.models.mypy_plugin"]

It reads each ``@patch_of(Base, exclude=(...))`` decorator (semantic analysis), then gives the
class's constructor a keyword-only parameter per field of ``Base`` but ``exclude`` and per field
the class declares itself, each with the field's type and a default (a field that cannot be
NULL keeps its non-optional type: passing ``None`` is refused at run time too), and types an
attribute read as the field's type ``| None`` (an omitted field reads as ``None``). It imports
only mypy, never leaddb.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import (
    ARG_NAMED_OPT,
    CallExpr,
    Expression,
    ListExpr,
    RefExpr,
    SetExpr,
    StrExpr,
    TupleExpr,
    TypeInfo,
    Var,
)
from mypy.plugin import AttributeContext, ClassDefContext, FunctionSigContext, Plugin
from mypy.types import AnyType, FunctionLike, Instance, NoneType, Type, TypeOfAny, UnionType
from mypy.types import get_proper_type as proper

PATCH_OF = "leaddb.models.base.patch_of"
UPDATE_SCHEMA = "leaddb.models.base.UpdateSchema"
_KEY = "leaddb_patch_of"


def _names(expression: Expression) -> list[str] | None:
    if isinstance(expression, TupleExpr | ListExpr | SetExpr):
        names = [item.value for item in expression.items if isinstance(item, StrExpr)]
        return names if len(names) == len(expression.items) else None
    return None


def _record_patch_of(ctx: ClassDefContext) -> None:
    """Keep the decorator's base and exclusions on the class, for the type checker's hooks."""
    call = ctx.reason
    if not isinstance(call, CallExpr) or not call.args or not isinstance(call.args[0], RefExpr):
        ctx.api.fail("patch_of needs a Base class as its first argument", ctx.reason)
        return
    exclude: list[str] = []
    for name, argument in zip(call.arg_names, call.args, strict=True):
        if name == "exclude":
            found = _names(argument)
            if found is None:
                ctx.api.fail("patch_of(exclude=...) must be a literal tuple of names", argument)
                return
            exclude = found
    ctx.cls.info.metadata[_KEY] = {"base": call.args[0].fullname, "exclude": exclude}


def _fields(plugin: Plugin, info: TypeInfo) -> dict[str, Type] | None:
    """Name -> declared type of every field of an Update schema, or None if ``info`` is not
    one. The Base's fields come first, in their order, then those the class declares."""
    recorded = info.metadata.get(_KEY)
    if recorded is None:
        return None
    fields: dict[str, Type] = {}
    base = plugin.lookup_fully_qualified(recorded["base"])
    if base is not None and isinstance(base.node, TypeInfo):
        for name in _dataclass_fields(base.node):
            if name not in recorded["exclude"]:
                found = _declared_type(base.node, name)
                if found is not None:
                    fields[name] = found
    for name in _dataclass_fields(info):
        found = _declared_type(info, name)
        if found is not None:
            fields[name] = found
    return fields


def _dataclass_fields(info: TypeInfo) -> list[str]:
    """Field names mypy's dataclass_transform support found on ``info`` (SQLModel's models),
    its bases' included.

    ``TypeInfo.metadata["dataclass"]["attributes"]`` is what mypy's own dataclasses plugin
    stores (mypy/plugins/dataclasses.py), not a documented API; no public one lists the fields
    of a dataclass_transform class. If an upgrade changes it, the Update schemas lose their
    fields and the type check of tests/typing/test_public_api_types.py fails loudly
    (test_update_schemas_are_precisely_typed, and every ``LeadUpdate(score=...)`` there);
    pyproject pins mypy below the next minor version for that reason."""
    names: list[str] = []
    for klass in reversed(info.mro):
        for attribute in klass.metadata.get("dataclass", {}).get("attributes", []):
            if attribute["name"] not in names:
                names.append(attribute["name"])
    return names


def _declared_type(info: TypeInfo, name: str) -> Type | None:
    symbol = info.get(name)
    if symbol is not None and isinstance(symbol.node, Var):
        return symbol.node.type
    return None


def _update_info(plugin: Plugin, fullname: str) -> TypeInfo | None:
    symbol = plugin.lookup_fully_qualified(fullname)
    if symbol is not None and isinstance(symbol.node, TypeInfo) and _KEY in symbol.node.metadata:
        return symbol.node
    return None


class LeadDBPlugin(Plugin):
    def get_class_decorator_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        return _record_patch_of if fullname == PATCH_OF else None

    def get_function_signature_hook(
        self, fullname: str
    ) -> Callable[[FunctionSigContext], FunctionLike] | None:
        info = _update_info(self, fullname)
        if info is None:
            return None

        def signature(ctx: FunctionSigContext) -> FunctionLike:
            fields = _fields(self, info) or {}
            return ctx.default_signature.copy_modified(
                arg_types=list(fields.values()),
                arg_kinds=[ARG_NAMED_OPT] * len(fields),
                arg_names=list(fields),
            )

        return signature

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        # Reads that only UpdateSchema.__getattr__ answers arrive as "<UpdateSchema>.<name>".
        if not fullname.startswith(UPDATE_SCHEMA + "."):
            return None
        name = fullname.removeprefix(UPDATE_SCHEMA + ".")

        def attribute(ctx: AttributeContext) -> Type:
            instance = proper(ctx.type)
            if not isinstance(instance, Instance):
                return ctx.default_attr_type
            fields = _fields(self, instance.type)
            if fields is None:
                return ctx.default_attr_type
            if name not in fields:
                ctx.api.fail(f'"{instance.type.name}" has no field "{name}"', ctx.context)
                return AnyType(TypeOfAny.from_error)
            return UnionType.make_union([fields[name], NoneType()])

        return attribute


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return LeadDBPlugin
