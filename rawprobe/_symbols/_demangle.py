"""A demangler for the common subset of Itanium C++ ABI names (what GCC and Clang emit on Linux).

Why not call ``c++filt``: rawprobe runs on production hosts and in containers where binutils is
often absent, and the demangled names it stores in its cache must not depend on which binutils
version happened to be installed. Why not be complete: the full grammar (expressions in template
arguments, ``decltype``, vendor extensions) is large, and rare in the functions people probe. So
this module covers names, nested names, templates, substitutions, the standard abbreviations,
constructors, destructors, operators, lambdas, local names, ABI tags, thunks, function, array
and pointer-to-member types, template parameter packs and clone suffixes; on anything else
:func:`demangle` returns None and the caller keeps the mangled name, which still works.

The output is meant to be byte-for-byte what ``c++filt`` (libiberty's ``cp-demangle.c``) prints;
the tests check that on every function of ``libstdc++``, where anything not supported must come
out as None rather than as a different string.

Grammar references are to the Itanium C++ ABI, section 5.1 "Mangling" (itanium-cxx-abi.github.io).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["demangle"]

# Longer names are left mangled (a recursive descent over a crafted name must stay cheap).
_MAX_LENGTH = 8192
# What peek() returns past the end of the name (symbol names never contain NUL).
_END = "\0"


class _Unsupported(Exception):
    """The name uses grammar this demangler does not cover (or is not valid)."""


# <builtin-type>: code → (spelling, how a literal of the type prints: suffix, or None for
# "(type)value").
_BUILTINS: dict[str, tuple[str, str | None]] = {
    "v": ("void", None),
    "w": ("wchar_t", None),
    "b": ("bool", None),
    "c": ("char", None),
    "a": ("signed char", None),
    "h": ("unsigned char", None),
    "s": ("short", None),
    "t": ("unsigned short", None),
    "i": ("int", ""),
    "j": ("unsigned int", "u"),
    "l": ("long", "l"),
    "m": ("unsigned long", "ul"),
    "x": ("long long", "ll"),
    "y": ("unsigned long long", "ull"),
    "n": ("__int128", None),
    "o": ("unsigned __int128", None),
    "f": ("float", None),
    "d": ("double", None),
    "e": ("long double", None),
    "g": ("__float128", None),
    "z": ("...", None),
}

_D_BUILTINS = {
    "a": "auto",
    "c": "decltype(auto)",
    "d": "decimal64",
    "e": "decimal128",
    "f": "decimal32",
    "h": "half",
    "i": "char32_t",
    "s": "char16_t",
    "u": "char8_t",
    "n": "decltype(nullptr)",
}

_OPERATORS = {
    "nw": "new",
    "na": "new[]",
    "dl": "delete",
    "da": "delete[]",
    "aw": "co_await",
    "ps": "+",
    "ng": "-",
    "ad": "&",
    "de": "*",
    "co": "~",
    "pl": "+",
    "mi": "-",
    "ml": "*",
    "dv": "/",
    "rm": "%",
    "an": "&",
    "or": "|",
    "eo": "^",
    "aS": "=",
    "pL": "+=",
    "mI": "-=",
    "mL": "*=",
    "dV": "/=",
    "rM": "%=",
    "aN": "&=",
    "oR": "|=",
    "eO": "^=",
    "ls": "<<",
    "rs": ">>",
    "lS": "<<=",
    "rS": ">>=",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "gt": ">",
    "le": "<=",
    "ge": ">=",
    "ss": "<=>",
    "nt": "!",
    "aa": "&&",
    "oo": "||",
    "pp": "++",
    "mm": "--",
    "cm": ",",
    "pm": "->*",
    "pt": "->",
    "cl": "()",
    "ix": "[]",
    "qu": "?",
}

# <substitution> ::= St | Sa | Sb | Ss | Si | So | Sd: (short spelling, spelling used before a
# constructor or destructor, the class's own name for that constructor or destructor).
_STANDARD = {
    "t": ("std", "std", ""),
    "a": ("std::allocator", "std::allocator", "allocator"),
    "b": ("std::basic_string", "std::basic_string", "basic_string"),
    "s": (
        "std::string",
        "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
        "basic_string",
    ),
    "i": ("std::istream", "std::basic_istream<char, std::char_traits<char> >", "basic_istream"),
    "o": ("std::ostream", "std::basic_ostream<char, std::char_traits<char> >", "basic_ostream"),
    "d": (
        "std::iostream",
        "std::basic_iostream<char, std::char_traits<char> >",
        "basic_iostream",
    ),
}

_SPECIAL_PREFIXES = {
    "TV": "vtable for ",
    "TT": "VTT for ",
    "TI": "typeinfo for ",
    "TS": "typeinfo name for ",
}


# -- the tree ---------------------------------------------------------------------------------


class _Node:
    __slots__ = ()


class _Name(_Node):
    """An identifier, a builtin type or an already spelled name."""

    __slots__ = ("literal_suffix", "text")

    def __init__(self, text: str, literal_suffix: str | None = None) -> None:
        self.text = text
        self.literal_suffix = literal_suffix


class _StdSub(_Name):
    """A standard abbreviation (``Ss``...) used as is: not a substitution candidate."""

    __slots__ = ()


class _Nested(_Node):
    __slots__ = ("last", "prefix")

    def __init__(self, prefix: _Node, last: _Node) -> None:
        self.prefix = prefix
        self.last = last


class _Template(_Node):
    __slots__ = ("args", "name")

    def __init__(self, name: _Node, args: list[_Node]) -> None:
        self.name = name
        self.args = args


class _Ctor(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Dtor(_Ctor):
    __slots__ = ()


class _Operator(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Conversion(_Node):
    __slots__ = ("type",)

    def __init__(self, target: _Node) -> None:
        self.type = target


class _AbiTag(_Node):
    __slots__ = ("inner", "tag")

    def __init__(self, inner: _Node, tag: str) -> None:
        self.inner = inner
        self.tag = tag


class _Lambda(_Node):
    __slots__ = ("number", "params")

    def __init__(self, params: list[_Node], number: int) -> None:
        self.params = params
        self.number = number


class _Unnamed(_Node):
    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number


class _Local(_Node):
    __slots__ = ("encoding", "entity")

    def __init__(self, encoding: _Node, entity: _Node) -> None:
        self.encoding = encoding
        self.entity = entity


class _Special(_Node):
    __slots__ = ("inner", "prefix")

    def __init__(self, prefix: str, inner: _Node) -> None:
        self.prefix = prefix
        self.inner = inner


class _Clone(_Node):
    __slots__ = ("inner", "suffix")

    def __init__(self, inner: _Node, suffix: str) -> None:
        self.inner = inner
        self.suffix = suffix


class _MethodQuals(_Node):
    """A nested name with the qualifiers of ``this`` (``N K ... E`` → ``... const``)."""

    __slots__ = ("name", "quals", "ref")

    def __init__(self, name: _Node, quals: list[str], ref: str) -> None:
        self.name = name
        self.quals = quals
        self.ref = ref


class _Function(_Node):
    """A function encoding: name, return type (templates only), parameters."""

    __slots__ = ("name", "params", "ret")

    def __init__(self, name: _Node, ret: _Node | None, params: list[_Node]) -> None:
        self.name = name
        self.ret = ret
        self.params = params


class _Qual(_Node):
    __slots__ = ("inner", "quals")

    def __init__(self, inner: _Node, quals: list[str]) -> None:
        self.inner = inner
        self.quals = quals


class _Pointer(_Node):
    __slots__ = ("inner", "symbol")

    def __init__(self, inner: _Node, symbol: str) -> None:
        self.inner = inner
        self.symbol = symbol  # "*", "&" or "&&"


class _FunctionType(_Node):
    __slots__ = ("params", "ref", "ret")

    def __init__(self, ret: _Node, params: list[_Node], ref: str) -> None:
        self.ret = ret
        self.params = params
        self.ref = ref


class _Array(_Node):
    __slots__ = ("dimension", "element")

    def __init__(self, dimension: str, element: _Node) -> None:
        self.dimension = dimension
        self.element = element


class _MemberPointer(_Node):
    __slots__ = ("cls", "member")

    def __init__(self, cls: _Node, member: _Node) -> None:
        self.cls = cls
        self.member = member


class _TemplateParam(_Node):
    """``T_``/``T<n>_``: resolved while printing, against the innermost enclosing template."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _Pack(_Node):
    __slots__ = ("items",)

    def __init__(self, items: list[_Node]) -> None:
        self.items = items


class _PackExpansion(_Node):
    __slots__ = ("pattern",)

    def __init__(self, pattern: _Node) -> None:
        self.pattern = pattern


class _Complex(_Node):
    __slots__ = ("inner",)

    def __init__(self, inner: _Node) -> None:
        self.inner = inner


# -- the parser -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text + _END * 4
        self.length = len(text)
        self.position = 0
        # Each candidate remembers the function encoding it was made in: a template parameter
        # reached through a substitution from another encoding (a local name's function) is
        # printed by cp-demangle.c in ways that depend on its printing order; such names are
        # left mangled rather than risk a wrong one.
        self.substitutions: list[tuple[_Node, int]] = []
        self.scope = 0
        self.scopes_made = 0
        self.last_name = ""

    # character access
    def peek(self, ahead: int = 0) -> str:
        # The text ends with NUL padding, so the hot path needs no bounds check.
        try:
            return self.text[self.position + ahead]
        except IndexError:
            return _END

    def advance(self, count: int = 1) -> None:
        self.position += count

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Unsupported(f"expected {char!r} at {self.position}")
        self.position += 1

    def number(self) -> int:
        negative = self.peek() == "n"
        if negative:
            self.advance()
        start = self.position
        while self.peek().isdigit():
            self.advance()
        if start == self.position:
            raise _Unsupported("expected a number")
        value = int(self.text[start : self.position])
        return -value if negative else value

    def seq_id(self) -> int:
        # <seq-id> ::= <0-9A-Z>+, base 36; "S_" is 0, "S0_" is 1.
        if self.peek() == "_":
            self.advance()
            return 0
        value = 0
        while True:
            char = self.peek()
            if char.isdigit():
                value = value * 36 + ord(char) - ord("0")
            elif "A" <= char <= "Z":
                value = value * 36 + ord(char) - ord("A") + 10
            else:
                break
            self.advance()
        self.expect("_")
        return value + 1

    def add_substitution(self, node: _Node) -> None:
        self.substitutions.append((node, self.scope))

    # <mangled-name> ::= _Z <encoding> [. <clone suffix>]*
    def mangled_name(self) -> _Node:
        self.expect("_")
        self.expect("Z")
        node = self.encoding()
        while self.peek() == "." and (
            self.peek(1).islower() or self.peek(1).isdigit() or self.peek(1) == "_"
        ):
            node = _Clone(node, self.clone_suffix())
        if self.position != self.length:
            raise _Unsupported("trailing characters")
        return node

    def clone_suffix(self) -> str:
        # cp-demangle.c d_clone_suffix: "." [a-z0-9_]+ then ("." [0-9]+)*.
        start = self.position
        self.advance(2)
        while self.peek().islower() or self.peek().isdigit() or self.peek() == "_":
            self.advance()
        while self.peek() == "." and self.peek(1).isdigit():
            self.advance(2)
            while self.peek().isdigit():
                self.advance()
        return self.text[start : self.position]

    def encoding(self) -> _Node:
        char = self.peek()
        if char in ("G", "T"):
            return self.special_name()
        saved_scope = self.scope
        self.scopes_made += 1
        self.scope = self.scopes_made
        try:
            name = self.name()
            if self.peek() in (_END, "E", "."):
                return name
            ret = self.type() if _has_return_type(name) else None
            params = self.bare_function_params()
        finally:
            self.scope = saved_scope
        return _Function(name, ret, params)

    def bare_function_params(self) -> list[_Node]:
        params = []
        while self.peek() not in (_END, "E", "."):
            params.append(self.type())
        if not params:
            raise _Unsupported("function without parameter types")
        if len(params) == 1 and isinstance(params[0], _Name) and params[0].text == "void":
            return []
        return params

    def special_name(self) -> _Node:
        two = self.text[self.position : self.position + 2]
        if two in _SPECIAL_PREFIXES:
            self.advance(2)
            return _Special(_SPECIAL_PREFIXES[two], self.type())
        if two == "Th":
            self.advance(1)  # the "h" starts the call offset
            self.call_offset("h")
            return _Special("non-virtual thunk to ", self.encoding())
        if two == "Tv":
            self.advance(1)
            self.call_offset("v")
            return _Special("virtual thunk to ", self.encoding())
        if two == "Tc":
            self.advance(2)
            self.call_offset(None)
            self.call_offset(None)
            return _Special("covariant return thunk to ", self.encoding())
        if two == "TW":
            self.advance(2)
            return _Special("TLS wrapper function for ", self.name())
        if two == "TH":
            self.advance(2)
            return _Special("TLS init function for ", self.name())
        if two == "GV":
            self.advance(2)
            return _Special("guard variable for ", self.name())
        if self.text.startswith("GTt", self.position):
            self.advance(3)
            return _Special("transaction clone for ", self.encoding())
        if self.text.startswith("GTn", self.position):
            self.advance(3)
            return _Special("non-transaction clone for ", self.encoding())
        raise _Unsupported("special name")

    def call_offset(self, kind: str | None) -> None:
        char = self.peek()
        if kind is not None and char != kind:
            raise _Unsupported("call offset")
        self.advance()
        if char == "h":
            self.number()
        elif char == "v":
            self.number()
            self.expect("_")
            self.number()
        else:
            raise _Unsupported("call offset")
        self.expect("_")

    # <name>
    def name(self) -> _Node:
        char = self.peek()
        if char == "N":
            return self.nested_name()
        if char == "Z":
            return self.local_name()
        if char == "S":
            if self.peek(1) == "t":
                self.advance(2)
                node: _Node = _Nested(_Name("std"), self.unqualified_name())
                if self.peek() == "I":
                    self.add_substitution(node)
                    node = _Template(node, self.template_arguments())
                return node
            node = self.substitution(prefix=False)
            if self.peek() == "I":
                node = _Template(node, self.template_arguments())
            return node
        node = self.unqualified_name()
        if self.peek() == "I":
            self.add_substitution(node)
            node = _Template(node, self.template_arguments())
        return node

    def nested_name(self) -> _Node:
        self.expect("N")
        quals = self.cv_qualifiers()
        ref = ""
        if self.peek() == "R":
            ref = " &"
            self.advance()
        elif self.peek() == "O":
            ref = " &&"
            self.advance()
        current: _Node | None = None
        while True:
            char = self.peek()
            if char == "E":
                self.advance()
                break
            if char == _END:
                raise _Unsupported("unterminated nested name")
            if char == "D" and self.peek(1) in ("T", "t"):
                raise _Unsupported("decltype")
            if char == "I":
                if current is None:
                    raise _Unsupported("template arguments without a name")
                current = _Template(current, self.template_arguments())
            elif char == "T":
                component = self.template_param()
                current = component if current is None else _Nested(current, component)
            elif char == "S":
                component = self.substitution(prefix=True)
                current = component if current is None else _Nested(current, component)
            elif char == "M":
                self.advance()  # the initializer scope of a lambda; already a candidate
                continue
            else:
                component = self.unqualified_name()
                current = component if current is None else _Nested(current, component)
            # cp-demangle.c d_prefix: each prefix but the last is a candidate, unless it was
            # itself a substitution.
            if char != "S" and self.peek() != "E":
                self.add_substitution(current)
        if current is None:
            raise _Unsupported("empty nested name")
        if quals or ref:
            return _MethodQuals(current, quals, ref)
        return current

    def local_name(self) -> _Node:
        self.expect("Z")
        encoding = self.encoding()
        self.expect("E")
        if self.peek() == "s":
            self.advance()
            self.discriminator()
            return _Local(encoding, _Name("string literal"))
        if self.peek() == "d":
            raise _Unsupported("default argument scope")
        entity = self.name()
        self.discriminator()
        return _Local(encoding, entity)

    def discriminator(self) -> None:
        # <discriminator> ::= _ <digit> | __ <number> _
        if self.peek() != "_":
            return
        self.advance()
        if self.peek() == "_":
            self.advance()
            self.number()
            self.expect("_")
        else:
            if not self.peek().isdigit():
                raise _Unsupported("discriminator")
            self.advance()

    def unqualified_name(self) -> _Node:
        char = self.peek()
        node: _Node
        if char.isdigit():
            node = _Name(self.source_name())
        elif char == "L":
            # A name with internal linkage (cp-demangle.c d_unqualified_name).
            self.advance()
            node = _Name(self.source_name())
            self.discriminator()
        elif char == "C" or (char == "D" and self.peek(1) in ("0", "1", "2", "4", "5")):
            node = self.ctor_dtor_name()
        elif char == "U":
            node = self.unnamed_type_name()
        elif char.islower():
            node = self.operator_name()
        else:
            raise _Unsupported(f"unqualified name at {self.position}")
        while self.peek() == "B":
            self.advance()
            node = _AbiTag(node, self.source_name(set_last=False))
        return node

    def source_name(self, set_last: bool = True) -> str:
        length = self.number()
        if length <= 0 or self.position + length > self.length:
            raise _Unsupported("bad identifier length")
        identifier = self.text[self.position : self.position + length]
        self.advance(length)
        # cp-demangle.c d_identifier: GCC's name for an anonymous namespace.
        if (
            identifier.startswith("_GLOBAL_")
            and len(identifier) > 9
            and identifier[8] in "._$"
            and identifier[9] == "N"
        ):
            identifier = "(anonymous namespace)"
        if set_last:
            self.last_name = identifier
        return identifier

    def ctor_dtor_name(self) -> _Node:
        char, kind = self.peek(), self.peek(1)
        if not self.last_name:
            raise _Unsupported("constructor without a class name")
        if char == "C":
            if kind not in ("1", "2", "3", "4", "5"):
                raise _Unsupported("inheriting constructor")
            self.advance(2)
            return _Ctor(self.last_name)
        self.advance(2)
        return _Dtor(self.last_name)

    def unnamed_type_name(self) -> _Node:
        kind = self.peek(1)
        if kind == "t":
            self.advance(2)
            number = self.number() + 2 if self.peek() != "_" else 1
            self.expect("_")
            return _Unnamed(number)
        if kind == "l":
            self.advance(2)
            if self.peek() == "T":
                raise _Unsupported("generic lambda")
            params = []
            while self.peek() != "E":
                if self.peek() == _END:
                    raise _Unsupported("unterminated lambda")
                params.append(self.type())
            self.advance()
            if len(params) == 1 and isinstance(params[0], _Name) and params[0].text == "void":
                params = []
            number = self.number() + 2 if self.peek() != "_" else 1
            self.expect("_")
            return _Lambda(params, number)
        raise _Unsupported("unnamed type")

    def operator_name(self) -> _Node:
        code = self.text[self.position : self.position + 2]
        if code == "cv":
            self.advance(2)
            return _Conversion(self.type())
        if code == "li":
            self.advance(2)
            return _Operator('"" ' + self.source_name())
        spelled = _OPERATORS.get(code)
        if spelled is None:
            raise _Unsupported(f"operator {code!r}")
        self.advance(2)
        return _Operator(spelled)

    def substitution(self, prefix: bool) -> _Node:
        self.expect("S")
        char = self.peek()
        if char == "_" or char.isdigit() or "A" <= char <= "Z":
            index = self.seq_id()
            if index >= len(self.substitutions):
                raise _Unsupported("substitution out of range")
            node, scope = self.substitutions[index]
            if scope != self.scope and _has_template_param(node):
                raise _Unsupported("template parameter substituted across encodings")
            return node
        standard = _STANDARD.get(char)
        if standard is None:
            raise _Unsupported(f"standard substitution S{char}")
        self.advance()
        short, full, class_name = standard
        # c++filt runs cp-demangle.c with DMGL_VERBOSE, which always prints the full template
        # spelling; a constructor or destructor after it is named after the class template.
        del short, prefix
        if class_name:
            self.last_name = class_name
        return _StdSub(full)

    def template_arguments(self) -> list[_Node]:
        self.expect("I")
        # cp-demangle.c d_template_args: names inside the arguments must not become the name
        # a following constructor or destructor is called by.
        saved_last = self.last_name
        args = []
        while self.peek() != "E":
            if self.peek() == _END:
                raise _Unsupported("unterminated template arguments")
            args.append(self.template_argument())
        self.advance()
        self.last_name = saved_last
        return args

    def template_argument(self) -> _Node:
        char = self.peek()
        if char == "L":
            return self.literal()
        if char == "J":
            self.advance()
            items = []
            while self.peek() != "E":
                if self.peek() == _END:
                    raise _Unsupported("unterminated pack")
                items.append(self.template_argument())
            self.advance()
            return _Pack(items)
        if char == "X":
            raise _Unsupported("expression")
        return self.type()

    def literal(self) -> _Node:
        self.expect("L")
        if self.peek() == "_" or self.peek() == "Z":
            raise _Unsupported("external name as template argument")
        literal_type = self.type()
        negative = self.peek() == "n"
        if negative:
            self.advance()
        start = self.position
        while self.peek().isdigit():
            self.advance()
        digits = self.text[start : self.position]
        if not digits:
            raise _Unsupported("literal value")
        self.expect("E")
        value = ("-" if negative else "") + digits
        if isinstance(literal_type, _Name) and not isinstance(literal_type, _StdSub):
            if literal_type.text == "bool" and digits in ("0", "1") and not negative:
                return _Name("true" if digits == "1" else "false")
            if literal_type.literal_suffix is not None:
                return _Name(value + literal_type.literal_suffix)
        return _Name(f"({_render_type(literal_type)}){value}")

    def template_param(self) -> _Node:
        self.expect("T")
        index = 0 if self.peek() == "_" else self.number() + 1
        self.expect("_")
        return _TemplateParam(index)

    def cv_qualifiers(self) -> list[str]:
        quals = []
        while self.peek() in ("r", "V", "K") and self.peek():
            quals.append({"r": "restrict", "V": "volatile", "K": "const"}[self.peek()])
            self.advance()
        return quals

    # <type>
    def type(self) -> _Node:
        char = self.peek()
        if char == _END:
            raise _Unsupported("missing type")
        builtin = _BUILTINS.get(char)
        if builtin is not None:
            self.advance()
            return _Name(builtin[0], builtin[1])
        node: _Node
        if char in ("r", "V", "K"):
            quals = self.cv_qualifiers()
            # cp-demangle.c: qualifiers before a function type apply to ``this`` (a member
            # function type); the unqualified function type is then not a candidate.
            inner = self.function_type() if self.peek() == "F" else self.type()
            node = _Qual(inner, quals)
        elif char == "P":
            self.advance()
            node = _Pointer(self.type(), "*")
        elif char == "R":
            self.advance()
            node = _Pointer(self.type(), "&")
        elif char == "O":
            self.advance()
            node = _Pointer(self.type(), "&&")
        elif char == "C":
            self.advance()
            node = _Complex(self.type())
        elif char == "F":
            node = self.function_type()
        elif char == "A":
            node = self.array_type()
        elif char == "M":
            self.advance()
            cls = self.type()
            node = _MemberPointer(cls, self.type())
        elif char == "T":
            node = self.template_param()
            if self.peek() == "I":
                self.add_substitution(node)
                node = _Template(node, self.template_arguments())
        elif char == "S":
            following = self.peek(1)
            if following == "_" or following.isdigit() or "A" <= following <= "Z":
                node = self.substitution(prefix=False)
                if self.peek() != "I":
                    return node
                node = _Template(node, self.template_arguments())
            else:
                node = self.name()
                if isinstance(node, _StdSub):
                    return node
        elif char == "D":
            following = self.peek(1)
            if following in _D_BUILTINS:
                self.advance(2)
                return _Name(_D_BUILTINS[following])
            if following == "p":
                self.advance(2)
                node = _PackExpansion(self.type())
            else:
                raise _Unsupported(f"type D{following}")
        elif char.isdigit() or char in ("N", "Z"):
            node = self.name()
        else:
            raise _Unsupported(f"type {char!r}")
        self.add_substitution(node)
        return node

    def function_type(self) -> _Node:
        self.expect("F")
        if self.peek() == "Y":
            self.advance()
        ret = self.type()
        params = []
        ref = ""
        while True:
            char = self.peek()
            if char == "E":
                self.advance()
                break
            if char in ("R", "O") and self.peek(1) == "E":
                ref = " &" if char == "R" else " &&"
                self.advance(2)
                break
            if char == _END:
                raise _Unsupported("unterminated function type")
            params.append(self.type())
        if len(params) == 1 and isinstance(params[0], _Name) and params[0].text == "void":
            params = []
        return _FunctionType(ret, params, ref)

    def array_type(self) -> _Node:
        self.expect("A")
        dimension = ""
        if self.peek().isdigit():
            start = self.position
            while self.peek().isdigit():
                self.advance()
            dimension = self.text[start : self.position]
        elif self.peek() != "_":
            raise _Unsupported("array bound expression")
        self.expect("_")
        return _Array(dimension, self.type())


def _has_template_param(node: _Node) -> bool:
    if isinstance(node, _TemplateParam):
        return True
    for name in getattr(node, "__slots__", ()):
        value = getattr(node, name)
        if isinstance(value, _Node) and _has_template_param(value):
            return True
        if isinstance(value, list) and any(
            isinstance(item, _Node) and _has_template_param(item) for item in value
        ):
            return True
    return False


def _method_quals(node: _Node) -> _MethodQuals | None:
    """The ``this`` qualifiers of a function's name (of a local name's entity, too)."""
    if isinstance(node, _Local):
        node = node.entity
    return node if isinstance(node, _MethodQuals) else None


def _unwrap_quals(node: _Node) -> _Node:
    return node.name if isinstance(node, _MethodQuals) else node


def _is_ctor_dtor_or_conversion(node: _Node) -> bool:
    while True:
        if isinstance(node, _MethodQuals):
            node = node.name
        elif isinstance(node, _Nested):
            node = node.last
        elif isinstance(node, _AbiTag):
            node = node.inner
        elif isinstance(node, _Local):
            node = node.entity
        else:
            return isinstance(node, (_Ctor, _Conversion))


def _has_return_type(node: _Node) -> bool:
    # cp-demangle.c has_return_type: template functions other than constructors, destructors
    # and conversion operators mangle their return type.
    node = _unwrap_quals(node)
    if isinstance(node, _Local):
        return _has_return_type(node.entity)
    if isinstance(node, _Template):
        return not _is_ctor_dtor_or_conversion(node.name)
    return False


# -- printing ---------------------------------------------------------------------------------


class _Printer:
    """Prints the tree as cp-demangle.c does.

    Template parameters are looked up while printing, in a stack of template argument lists:
    printing a function whose name is a template pushes its arguments, and printing the value
    of a parameter pops one level (the value may itself name an outer template's parameter).
    This is cp-demangle.c's ``dpi->templates``; resolving at parse time instead gives wrong
    names when a substitution made inside a local name's function is used outside it.
    """

    def __init__(self) -> None:
        self.templates: list[list[_Node]] = []
        self.pack_index: int | None = None

    def resolve(self, node: _Node) -> tuple[_Node, list[list[_Node]] | None]:
        """Follow template parameters: the node they stand for, and the template stack to print
        it with (None: the current one)."""
        stack: list[list[_Node]] | None = None
        while isinstance(node, _TemplateParam):
            current = self.templates if stack is None else stack
            if not current or node.index >= len(current[-1]):
                raise _Unsupported("template parameter outside a template")
            value = current[-1][node.index]
            stack = current[:-1]
            if isinstance(value, _Pack):
                if self.pack_index is None or self.pack_index >= len(value.items):
                    raise _Unsupported("pack used outside an expansion")
                value = value.items[self.pack_index]
            node = value
        return node, stack

    def kind(self, node: _Node) -> _Node:
        """The node a (possibly template-parameter) node stands for, for type tests only."""
        return self.resolve(node)[0]

    def under(self, stack: list[list[_Node]] | None, action: Callable[[], str]) -> str:
        if stack is None:
            return action()
        saved = self.templates
        self.templates = stack
        try:
            return action()
        finally:
            self.templates = saved

    def name(self, node: _Node) -> str:
        if not isinstance(node, _TemplateParam):
            return self._name(node)
        resolved, stack = self.resolve(node)
        return self.under(stack, lambda: self._name(resolved))

    def _name(self, node: _Node) -> str:
        if isinstance(node, _Name):
            return node.text
        if isinstance(node, _Nested):
            return f"{self.name(node.prefix)}::{self.name(node.last)}"
        if isinstance(node, _Template):
            text = self.name(node.name)
            if text.endswith("<"):
                text += " "
            args, last_char = self.argument_list(node.args)
            # cp-demangle.c: a space between two closing '>'. An empty pack at the end is printed
            # as ", " then taken back, which leaves ' ' as the "last character": no space then.
            return f"{text}<{args}{' ' if last_char == '>' else ''}>"
        if isinstance(node, _Dtor):
            return "~" + node.text
        if isinstance(node, _Ctor):
            return node.text
        if isinstance(node, _Operator):
            separator = " " if node.text[0].islower() or node.text[0] == '"' else ""
            return f"operator{separator}{node.text}"
        if isinstance(node, _Conversion):
            return "operator " + self.type(node.type)
        if isinstance(node, _AbiTag):
            return f"{self.name(node.inner)}[abi:{node.tag}]"
        if isinstance(node, _Lambda):
            return f"{{lambda({self.join(node.params)})#{node.number}}}"
        if isinstance(node, _Unnamed):
            return f"{{unnamed type#{node.number}}}"
        if isinstance(node, _Local):
            # c++filt never prints the return type of the function a local name is inside.
            encoding = node.encoding
            text = (
                self.function(encoding, with_return=False)
                if isinstance(encoding, _Function)
                else self.name(encoding)
            )
            return f"{text}::{self.name(node.entity)}"
        if isinstance(node, _MethodQuals):
            return self.name(node.name)
        if isinstance(node, _Function):
            return self.function(node)
        if isinstance(node, _Special):
            return node.prefix + self.name(node.inner)
        if isinstance(node, _Clone):
            return f"{self.name(node.inner)} [clone {node.suffix}]"
        return self._type(node, "")

    def function(self, node: _Function, with_return: bool = True) -> str:
        inner = _unwrap_quals(node.name)
        target = inner.entity if isinstance(inner, _Local) else inner
        pushed = isinstance(target, _Template)
        if isinstance(target, _Template):
            self.templates.append(target.args)
        try:
            text = ""
            if node.ret is not None and with_return:
                if _declarator_heavy(self, node.ret):
                    raise _Unsupported("return type needs a declarator")
                text = self.type(node.ret) + " "
            text += self.name(node.name) + "(" + self.join(node.params) + ")"
            quals = _method_quals(node.name)
            if quals is not None:
                text += _quals_text(quals.quals) + quals.ref
            return text
        finally:
            if pushed:
                self.templates.pop()

    def argument_list(self, items: Sequence[_Node]) -> tuple[str, str]:
        """The items joined by ", " as cp-demangle.c prints an argument list, and the character
        it considers last (which decides the space in ``> >``)."""
        text = ""
        last_char = "<"
        for position, item in enumerate(items):
            printed = ", ".join(self.expand(item))
            if position == 0:
                if not printed and len(items) > 1:
                    raise _Unsupported("empty pack before other arguments")
                text = printed
                last_char = printed[-1] if printed else last_char
            elif printed:
                text += ", " + printed
                last_char = printed[-1]
            else:
                last_char = " "
        return text, last_char

    def join(self, items: Sequence[_Node]) -> str:
        return self.argument_list(items)[0]

    def expand(self, node: _Node) -> list[str]:
        """How one argument prints: a pack as its elements, a pack expansion once per element."""
        if isinstance(node, _Pack):
            parts: list[str] = []
            for item in node.items:
                parts += self.expand(item)
            return parts
        if isinstance(node, _PackExpansion):
            pack = self.find_pack(node.pattern)
            if pack is None:
                raise _Unsupported("pack expansion without a pack")
            saved = self.pack_index
            parts = []
            try:
                for index in range(len(pack.items)):
                    self.pack_index = index
                    parts.append(self.type(node.pattern))
            finally:
                self.pack_index = saved
            return parts
        return [self.type(node)]

    def find_pack(self, node: _Node) -> _Pack | None:
        # cp-demangle.c d_find_pack: the first template parameter in the pattern whose argument
        # is a pack; values of parameters are not searched.
        if isinstance(node, _TemplateParam):
            if self.templates and node.index < len(self.templates[-1]):
                value = self.templates[-1][node.index]
                if isinstance(value, _Pack):
                    return value
            return None
        children: list[_Node] = []
        if isinstance(node, (_Qual, _Pointer, _Complex)):
            children = [node.inner]
        elif isinstance(node, _Template):
            children = [node.name, *node.args]
        elif isinstance(node, _FunctionType):
            children = [node.ret, *node.params]
        elif isinstance(node, _Array):
            children = [node.element]
        elif isinstance(node, _MemberPointer):
            children = [node.cls, node.member]
        elif isinstance(node, _Nested):
            children = [node.prefix, node.last]
        for child in children:
            found = self.find_pack(child)
            if found is not None:
                return found
        return None

    def type(self, node: _Node, declarator: str = "") -> str:
        if not isinstance(node, _TemplateParam):
            return self._type(node, declarator)
        resolved, stack = self.resolve(node)
        return self.under(stack, lambda: self._type(resolved, declarator))

    def _type(self, node: _Node, declarator: str) -> str:
        if isinstance(node, _Pointer):
            inner, stack = self.resolve(node.inner)
            symbol = node.symbol
            if symbol != "*" and isinstance(inner, _Pointer) and inner.symbol != "*":
                # Reference collapsing (C++11 [dcl.ref]): && && stays &&, any other pair is &.
                collapsed = _Pointer(
                    inner.inner, "&&" if symbol == inner.symbol == "&&" else "&"
                )
                return self.under(stack, lambda: self._type(collapsed, declarator))
            return self.under(stack, lambda: self._type(inner, symbol + _spaced(declarator)))
        if isinstance(node, _Qual):
            inner, stack = self.resolve(node.inner)
            quals = node.quals
            if isinstance(inner, _Qual):
                # cp-demangle.c prints a qualifier already pending only once (T = int const
                # in "T const&" gives "int const&").
                merged = _Qual(inner.inner, [q for q in quals if q not in inner.quals]
                               + inner.quals)
                return self.under(stack, lambda: self._type(merged, declarator))
            text = _quals_text(quals)
            if isinstance(inner, _FunctionType):
                return self.under(stack, lambda: self.function_type(inner, declarator, text))
            if isinstance(inner, (_Pointer, _MemberPointer)):
                return self.under(stack, lambda: self._type(inner, text + declarator))
            if isinstance(inner, _Array):
                raise _Unsupported("qualified array")
            return _attach(self.under(stack, lambda: self._type(inner, "")) + text, declarator)
        if isinstance(node, _FunctionType):
            return self.function_type(node, declarator, "")
        if isinstance(node, _Array):
            suffix = f"[{node.dimension}]"
            if not declarator:
                return self.type(node.element, " " + suffix)
            if declarator.endswith("]"):
                # Another dimension of the same array: int [5][4].
                return self.type(node.element, declarator + suffix)
            return self.type(node.element, f"({declarator}) {suffix}")
        if isinstance(node, _MemberPointer):
            return self.type(node.member, f"{self.type(node.cls)}::*{_spaced(declarator)}")
        if isinstance(node, _Complex):
            return _attach(self.type(node.inner) + " _Complex", declarator)
        if isinstance(node, (_Pack, _PackExpansion)):
            raise _Unsupported("pack in a type")
        return _attach(self._name(node), declarator)

    def function_type(self, node: _FunctionType, declarator: str, quals: str) -> str:
        if _declarator_heavy(self, node.ret):
            raise _Unsupported("function returning a function or array pointer")
        params = self.join(node.params)
        head = self.type(node.ret)
        if declarator:
            return f"{head} ({declarator})({params}){quals}{node.ref}"
        return f"{head} ({params}){quals}{node.ref}"


def _declarator_heavy(printer: _Printer, node: _Node) -> bool:
    node = printer.kind(node)
    if isinstance(node, _MemberPointer):
        return True
    while isinstance(node, (_Pointer, _Qual)):
        node = printer.kind(node.inner)
        if isinstance(node, (_FunctionType, _Array, _MemberPointer)):
            return True
    return isinstance(node, (_FunctionType, _Array))


def _quals_text(quals: list[str]) -> str:
    # cp-demangle.c nests "rVK" as restrict(volatile(const(T))) and prints inside out.
    return "".join(" " + qual for qual in reversed(quals))


def _spaced(declarator: str) -> str:
    # cp-demangle.c puts a space between a pointer and a parenthesised group: char* (*) [3].
    return " " + declarator if declarator.startswith("(") else declarator


def _attach(base: str, declarator: str) -> str:
    if not declarator:
        return base
    if declarator[0] in "*& [":
        return base + declarator
    return f"{base} {declarator}"


def _render_type(node: _Node) -> str:
    return _Printer().type(node)


def demangle(name: str) -> str | None:
    """Demangle an Itanium C++ ABI symbol name.

    Args:
        name: A symbol name such as ``_ZN2ns3Foo3barEi``.

    Returns:
        The demangled name as ``c++filt`` prints it (``ns::Foo::bar(int)``), or None when
        ``name`` is not mangled, not valid, or uses grammar this demangler does not cover.
    """
    if not name.startswith("_Z") or len(name) > _MAX_LENGTH:
        return None
    try:
        parser = _Parser(name)
        return _Printer().name(parser.mangled_name())
    except (_Unsupported, RecursionError, ValueError, IndexError, KeyError):
        return None
