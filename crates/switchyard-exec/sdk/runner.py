# Runs a Python executor: `main(input, sdk)` if the code defines it, else the script as it is
# (input JSON on stdin, output JSON on stdout, as Enneo scripts expect).
import os
import sys

sys.path.insert(0, os.path.dirname(os.environ["SDK"]))
import switchyard_sdk as _sdk  # noqa: E402

if os.environ.get("SWITCHYARD_PACKAGES"):
    # The executor's installed packages, bound read-only into the run's root.
    sys.path.insert(0, os.environ["SWITCHYARD_PACKAGES"])

if os.environ.get("SWITCHYARD_WARM"):
    # Started ahead of its run: say so on the SDK channel, wait there for the code and the input
    # (one JSON line; the hub sends nothing else before the code's first call), write them.
    _fd = int(os.environ["SWITCHYARD_SDK_FD"])
    os.write(_fd, b"ready\n")
    _parts = []
    while True:
        _chunk = os.read(_fd, 1 << 16)
        if not _chunk:
            sys.exit(1)
        _parts.append(_chunk)
        if _chunk.endswith(b"\n"):
            break
    _go = _sdk.loads(b"".join(_parts))
    del _parts, _chunk
    with open("main.py", "w") as _f:
        _f.write(_go["main"])
    with open("input.json", "w") as _f:
        _f.write(_go["input"])
    del _go

_path = os.path.join(os.getcwd(), "main.py")
with open(_path) as _f:
    _source = _f.read()
if os.environ.get("SWITCHYARD_CHECK"):
    # Saving the executor: compile only, and name what does not.
    try:
        compile(_source, "main.py", "exec")
    except SyntaxError as _e:
        sys.stderr.write(f"{type(_e).__name__}: {_e.msg} (main.py, line {_e.lineno})\n")
        sys.exit(1)
    sys.exit(0)
_code = compile(_source, "main.py", "exec")
_globals = {"__name__": "__main__", "__file__": _path, "sdk": _sdk.sdk}
exec(_code, _globals)
if callable(_globals.get("main")):
    with open("input.json") as _f:
        _input = _sdk.loads(_f.read())
    _sdk._result(_globals["main"](_input, _sdk.sdk))
