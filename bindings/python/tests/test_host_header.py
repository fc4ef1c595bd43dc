"""The ctypes declarations in ``clove._lib`` against ``include/clove.h``: every prototype (name,
argument types, return type), every enum value, the field order and types of every struct, the
callback type and the ABI version. A header that gains, loses or changes anything fails here
until the binding follows. No library is needed, except for the layout check, which compiles a
small C probe against the header.
"""

import ctypes
import re
import shutil
import subprocess

import pytest

import clove
from clove import _lib
from clove.errors import ERROR_CLASSES, CloveError, error_for
from test_host_support import PYTHON_DIR, ROOT

HEADER = ROOT / "include" / "clove.h"

# Functions of the header deliberately left unwrapped, each with the reason. Empty: all wrapped.
UNWRAPPED = {}

# Each C enum and the Python IntEnum that mirrors it, with the prefix of its C member names.
ENUMS = {
    "clove_status": (clove.Status, "CLOVE_STATUS_"),
    "clove_stdio": (clove.Stdio, "CLOVE_STDIO_"),
    "clove_agent_state": (clove.AgentState, "CLOVE_AGENT_STATE_"),
    "clove_event_kind": (clove.EventKind, "CLOVE_EVENT_KIND_"),
}

SCALARS = {
    "bool": ctypes.c_bool, "int": ctypes.c_int, "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64, "uint8_t": ctypes.c_uint8, "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64, "size_t": ctypes.c_size_t, "double": ctypes.c_double,
}


def header():
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def ctype_of(decl):
    """The ctypes type the binding must use for C type ``decl`` (a declaration without its name)."""
    stars = decl.count("*")
    words = decl.replace("*", " ").split()
    const = "const" in words
    words = [w for w in words if w not in ("const", "struct")]
    assert len(words) in (1, 2), decl
    base = words[-1]
    if words[0] == "enum":
        ctype = ctypes.c_int
    elif base == "char":
        # `const char *` is a borrowed string; a `char *` one the caller frees, kept as a pointer.
        ctype, stars = (ctypes.c_char_p, stars - 1) if const else (ctypes.c_char, stars)
    elif base == "void":
        if stars == 0:
            return None
        ctype, stars = ctypes.c_void_p, stars - 1
    elif base in SCALARS:
        ctype = SCALARS[base]
    else:
        # A struct, an opaque handle or the callback typedef: clove._lib names its mirror alike.
        assert hasattr(_lib, base), f"clove._lib has no mirror of C type {decl!r}"
        ctype = getattr(_lib, base)
    for _ in range(stars):
        ctype = ctypes.POINTER(ctype)
    return ctype


def split_decl(decl):
    """``"const char *path"`` -> ``("const char *", "path")``."""
    match = re.fullmatch(r"(.*?)(\w+)", decl.strip(), flags=re.S)
    return match.group(1).strip(), match.group(2)


def header_functions():
    body = header().split('extern "C" {', 1)[1]
    functions = {}
    for match in re.finditer(r"([\w\s*]+?)\b(clove_\w+)\(([^)]*)\);", body):
        result, name, params = match.groups()
        params = [] if params.strip() == "void" else [split_decl(p)[0] for p in params.split(",")]
        functions[name] = (ctype_of(result.strip()), [ctype_of(p) for p in params])
    return functions


def header_blocks(kind):
    """``{name: body}`` of every ``typedef <kind> name { body } name;``."""
    pattern = rf"typedef {kind} (\w+) \{{(.*?)\}} \1;"
    return dict(re.findall(pattern, header(), flags=re.S))


def test_every_function_is_declared_with_the_headers_types():
    functions = header_functions()
    assert len(functions) >= 40, f"the header parser found only {sorted(functions)}"
    declared = set(_lib.PROTOTYPES) | set(UNWRAPPED)
    assert sorted(set(functions) - declared) == [], "in the header, not in clove._lib.PROTOTYPES"
    assert sorted(declared - set(functions)) == [], "in the binding, gone from the header"
    for name, (restype, argtypes) in functions.items():
        if name in UNWRAPPED:
            continue
        assert _lib.PROTOTYPES[name] == (restype, argtypes), name


def test_every_declared_function_is_called_by_the_package():
    sources = "".join(path.read_text() for path in (PYTHON_DIR / "clove").glob("*.py"))
    unused = [name for name in _lib.PROTOTYPES if not re.search(rf"\.{name}\(", sources)]
    assert unused == [], "declared but never called: the binding does not wrap them"


def test_enums_have_the_headers_values():
    enums = header_blocks("enum")
    assert sorted(enums) == sorted(ENUMS), "a C enum without its Python mirror, or the reverse"
    for name, body in enums.items():
        python_enum, prefix = ENUMS[name]
        c_members = {member: int(value)
                     for member, value in re.findall(r"(\w+) = (\d+)", body)}
        python_members = {prefix + m.name: m.value for m in python_enum}
        assert python_members == c_members, name
        assert getattr(_lib, name) is ctypes.c_int, f"{name} is passed as an int"


def test_structs_have_the_headers_fields_in_order():
    structs = header_blocks("struct")
    assert sorted(structs) == ["clove_agent_info", "clove_agent_metrics", "clove_event",
                              "clove_exit", "clove_think_request"]
    for name, body in structs.items():
        fields = [split_decl(decl) for decl in body.split(";") if decl.strip()]
        expected = [(field, ctype_of(ctype)) for ctype, field in fields]
        assert getattr(_lib, name)._fields_ == expected, name


def test_opaque_handles_stay_opaque():
    opaque = re.findall(r"typedef struct (\w+) \1;", header())
    assert sorted(opaque) == ["clove_agent_list", "clove_runtime", "clove_runtime_options",
                              "clove_spawn_options", "clove_think_answer"]
    for name in opaque:
        assert not hasattr(getattr(_lib, name), "_fields_"), name


def test_the_callback_types_match():
    typedefs = re.findall(r"typedef ([\w\s*]+?)\(\*(\w+)\)\(([^)]*)\);", header())
    assert sorted(name for _, name, _ in typedefs) == ["clove_event_callback", "clove_think_handler"]
    for result, name, params in typedefs:
        callback = getattr(_lib, name)
        assert callback._restype_ is ctype_of(result.strip()), name
        assert list(callback._argtypes_) == [ctype_of(split_decl(p)[0]) for p in params.split(",")]


def test_the_abi_version_matches():
    assert int(re.search(r"#define CLOVE_ABI_VERSION (\d+)", header()).group(1)) == _lib.ABI_VERSION


def test_every_failure_status_has_its_own_exception():
    failures = [status for status in clove.Status if status != clove.Status.OK]
    assert sorted(ERROR_CLASSES) == failures
    assert len(set(ERROR_CLASSES.values())) == len(failures)
    for status in failures:
        error = error_for(status, "clove_runtime_kill: boom")
        assert isinstance(error, CloveError) and error.status == status
        assert str(error) == "clove_runtime_kill: boom"
    newer = error_for(99, "from a newer library")
    assert type(newer) is CloveError and newer.status == 99


def test_the_ctypes_layout_matches_the_compilers(tmp_path):
    """Offsets and sizes as a C compiler lays the structs out, compared with ctypes'."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("SKIPPED: no C compiler to lay out the header's structs; NOT a pass")
    checks, expected = [], []
    for name in header_blocks("struct"):
        struct = getattr(_lib, name)
        checks.append(f'printf("{name} %zu\\n", sizeof({name}));')
        expected.append(f"{name} {ctypes.sizeof(struct)}")
        for field, _ in struct._fields_:
            checks.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
            expected.append(f"{name}.{field} {getattr(struct, field).offset}")
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"clove.h\"\n"
                     "int main(void) {\n" + "\n".join(checks) + "\nreturn 0;\n}\n")
    binary = tmp_path / "probe"
    subprocess.run([compiler, "-std=c11", "-Wall", "-Werror", "-I", str(ROOT / "include"),
                    str(probe), "-o", str(binary)], check=True)
    assert subprocess.run([binary], capture_output=True, text=True,
                          check=True).stdout.splitlines() == expected
