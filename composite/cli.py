"""The command line: `python -m composite chat|tool|code|exec|tools|convert|serve|export-hf` (see `--help`).

A terminal renderer of the agent's event stream: text streams to stdout, notes go to stderr, and
`--json` prints the transcript as JSON lines. Errors a user can cause exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, Iterable, TextIO

from .errors import CompositeError

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=["local", "openai"], default=None,
                   help="local: run the model here (default); openai: an OpenAI-compatible server "
                        "(default: $COMPOSITE_BACKEND, else local)")
    g.add_argument("--model", metavar="PATH|NAME",
                   help="local: model folder (default: $MODEL_PATH, else the embedded model); "
                        "openai: the server's model name (default: $COMPOSITE_MODEL)")
    g.add_argument("--base-url", metavar="URL", help="openai: the server, e.g. http://127.0.0.1:8000/v1 "
                                                     "(default: $OPENAI_BASE_URL)")
    g.add_argument("--api-key", metavar="KEY", help="openai: the server's API key (default: $OPENAI_API_KEY)")
    g.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    g.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    g.add_argument("--quantize", type=int, choices=[4, 8], help="bitsandbytes quantization (CUDA only)")
    g.add_argument("--engine", choices=["auto", "torch", "numpy"], default=None,
                   help="local: auto (default; $COMPOSITE_ENGINE overrides) runs a small GLM such as the embedded "
                        "model in NumPy without importing torch; torch: always transformers")
    s = p.add_argument_group("sampling")
    s.add_argument("--system", help="system prompt (default: the mode's own)")
    s.add_argument("--max-new-tokens", type=int, default=512)
    s.add_argument("--max-length", type=int, default=8192, help="prompt + output tokens")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument("--top-p", type=float, default=0.8)
    s.add_argument("--repetition-penalty", type=float, default=1.0)
    s.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print the transcript as JSON lines")


def _add_gateway_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("kernel gateway (remote kernels)")
    g.add_argument("--kernel-gateway", metavar="URL", help="run code on a Jupyter Kernel/Enterprise Gateway, e.g. "
                                                           "http://gateway:8888 (default: $COMPOSITE_KERNEL_GATEWAY; "
                                                           "unset: the local sandbox)")
    g.add_argument("--gateway-token", metavar="T", help="the gateway's auth token (default: $COMPOSITE_GATEWAY_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m composite", description="Chat, tool use and code interpreter.")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="chat once (with a question) or interactively (without)")
    chat.add_argument("question", nargs="?")
    _add_model_options(chat)

    tool = sub.add_parser("tool", help="answer with tools (function calling)")
    tool.add_argument("question", nargs="?")
    tool.add_argument("--tools", help="comma-separated tool names to enable (default: all)")
    tool.add_argument("--max-rounds", type=int, default=5)
    tool.add_argument("--tool-timeout", type=float, default=30.0)
    tool.add_argument("--mcp-config", metavar="PATH", help="MCP servers config (default: $COMPOSITE_MCP_CONFIG, "
                                                           "else ./mcp.json if it exists)")
    tool.add_argument("--batch", metavar="JSONL", help="run many prompts: lines of {prompt, expect?}")
    tool.add_argument("--out", metavar="JSONL", help="where --batch writes its results")
    tool.add_argument("--no-record", action="store_true", help="do not record the --batch run in the history store")
    _add_model_options(tool)

    code = sub.add_parser("code", help="answer by writing and running code in a fresh sandbox")
    code.add_argument("question", nargs="?")
    code.add_argument("--max-rounds", type=int, default=5)
    code.add_argument("--timeout", type=float, default=60.0, help="seconds per code execution")
    code.add_argument("--workdir", help="sandbox working directory (default: a new temporary one)")
    code.add_argument("--ask", action="store_true", help="show each piece of code and ask before running it "
                                                         "(run / edit / reject)")
    _add_gateway_options(code)
    _add_model_options(code)

    ex = sub.add_parser("exec", help="run code from stdin in a sandbox; print ordered outputs as JSON lines")
    ex.add_argument("--timeout", type=float, default=60.0)
    ex.add_argument("--workdir")
    _add_gateway_options(ex)

    runs = sub.add_parser("runs", help="recorded `tool --batch` runs: list, show RUN, compare RUN_A RUN_B")
    runs.add_argument("action", nargs="?", choices=["list", "show", "compare"], help="default: list")
    runs.add_argument("ids", nargs="*", metavar="RUN", help="run ids (or their first 4+ characters)")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=50, help="how many runs to list (newest first)")

    tools = sub.add_parser("tools", help="list every tool (built-in, user folder, MCP servers) with its JSON Schema "
                                         "and each MCP server's state; `tools call NAME JSON` calls one tool")
    tools.add_argument("--json", action="store_true")
    tools.add_argument("--mcp-config", metavar="PATH", help="MCP servers config (default: $COMPOSITE_MCP_CONFIG, "
                                                            "else ./mcp.json if it exists)")
    tools_sub = tools.add_subparsers(dest="tools_command")
    tcall = tools_sub.add_parser("call", help="call one tool directly, validated and timed out exactly as the "
                                              "model's calls are: python -m composite tools call calculator "
                                              "'{\"expression\": \"6*7\"}'")
    tcall.add_argument("name", help="the tool's name as `tools` lists it")
    tcall.add_argument("arguments", nargs="?", default="{}", help="the arguments as a JSON object (default: {})")
    tcall.add_argument("--timeout", type=float, default=30.0, help="seconds (default: 30, as in tool mode)")
    tcall.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print {ok, observation, error, duration, images} as JSON")
    tcall.add_argument("--mcp-config", metavar="PATH", default=argparse.SUPPRESS, help="as for `tools`")

    conv = sub.add_parser("convert", help="convert a ChatGLM3 checkpoint to a native safetensors folder")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])

    srv = sub.add_parser("serve", help="serve the model as an OpenAI-compatible API (/v1/chat/completions)")
    srv.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--model", metavar="PATH", help="model folder (default: $MODEL_PATH, else the embedded model)")
    srv.add_argument("--api-key", metavar="KEY", help="require this key (default: $COMPOSITE_API_KEY; none: open)")
    srv.add_argument("--served-model-name", metavar="NAME", help="the model id clients use (default: its name)")
    srv.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    srv.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    srv.add_argument("--quantize", type=int, choices=[4, 8], help="bitsandbytes quantization (CUDA only)")
    srv.add_argument("--engine", choices=["auto", "torch", "numpy"], default=None,
                     help="auto (default; $COMPOSITE_ENGINE overrides): NumPy for a small GLM such as the embedded model")

    exp = sub.add_parser("export-hf", help="write the model as a standard Hugging Face folder (for vLLM, "
                                           "transformers serve...)")
    exp.add_argument("dst")
    exp.add_argument("--model", metavar="PATH", help="model folder (default: $MODEL_PATH, else the embedded model)")
    exp.add_argument("--force", action="store_true", help="write into a non-empty DST")

    bench = sub.add_parser("bench", help="benchmark suite: streaming, time to first token, sandbox, app start, CLI")
    bench.add_argument("--json", metavar="FILE", help="also write the figures and the machine as JSON")
    bench.add_argument("--only", nargs="+", metavar="SECTION",
                       choices=["streaming", "ttft", "sandbox", "app", "cli"], help="run only these sections")
    bench.add_argument("--quick", action="store_true", help="tiny settings (checks the suite runs; figures are noise)")
    bench.add_argument("--repeats", type=int, metavar="N", help="runs per figure (default 5; the median is shown)")
    bench.add_argument("--model", metavar="PATH", help="model folder (default: $MODEL_PATH, else the embedded model)")
    return parser


# -- shared pieces -------------------------------------------------------------------------------
def _params(args: argparse.Namespace):
    from .messages import SamplingParams

    return SamplingParams(
        max_new_tokens=args.max_new_tokens,
        max_length=args.max_length,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def _load(args: argparse.Namespace, err: TextIO):
    import os

    backend = (args.backend or os.environ.get("COMPOSITE_BACKEND", "") or "local").strip().lower()
    if backend not in ("local", "openai"):
        raise CompositeError(f"COMPOSITE_BACKEND is {backend!r}; expected local or openai")
    if backend == "openai":
        from .backends.openai import OpenAIBackend

        base_url = args.base_url or os.environ.get("OPENAI_BASE_URL", "")
        if not base_url:
            raise CompositeError("--backend openai needs --base-url URL (or $OPENAI_BASE_URL), "
                                 "e.g. http://127.0.0.1:8000/v1")
        model = args.model or os.environ.get("COMPOSITE_MODEL", "")
        remote = OpenAIBackend(base_url, model, args.api_key or os.environ.get("OPENAI_API_KEY"))
        err.write(f"{remote.info.summary()}\n")
        return remote
    from .backends.local import load_model, resolve_model_path

    path = resolve_model_path(args.model)
    err.write(f"loading {path or 'the embedded model'} ...\n")
    err.flush()
    engine = args.engine or os.environ.get("COMPOSITE_ENGINE", "").strip() or "auto"
    runtime = load_model(path, device=args.device, dtype=args.dtype, quantize=args.quantize, engine=engine)
    err.write(f"{runtime.info.summary()} (loaded in {runtime.info.load_seconds:.1f} s)\n")
    return runtime


def _history(mode: str, system: str | None):
    from .messages import Message
    from .prompts import system_prompt

    text = system if system is not None else system_prompt(mode)
    return [Message("system", text)] if text else []


def _message_json(message) -> dict[str, Any]:
    data = message.to_dict()
    arguments = message.extra.get("arguments")
    if arguments is not None:
        data["arguments"] = arguments
    return data


class _Printer:
    """Renders agent events for a terminal: streamed text to `out`, notes to `err`."""

    def __init__(self, out: TextIO, err: TextIO, stream_text: bool):
        self.out, self.err, self.stream_text = out, err, stream_text
        self.at_line_start = True

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def _newline(self) -> None:
        if not self.at_line_start:
            self._write("\n")

    def render(self, events: Iterable[Any]) -> str:
        from . import events as ev

        reason = "answered"
        for event in events:
            if isinstance(event, ev.TextDelta) and self.stream_text:
                self._write(event.text)
            elif isinstance(event, ev.TurnEnd) and self.stream_text:
                self._newline()
            elif isinstance(event, ev.OutputDelta) and self.stream_text:
                # what the running code prints, live, on stderr; the observation follows on stdout
                output = event.output
                self.err.write(output.text if output.kind != "image" else f"[image: {output.filename}]\n")
                self.err.flush()
            elif isinstance(event, ev.Observation) and self.stream_text:
                self._newline()
                self._write(f"[observation]\n{event.message.content}\n")
            elif isinstance(event, (ev.Notice, ev.Waiting, ev.ContextTrimmed)):
                self.err.write(f"note: {event.message}\n")
            elif isinstance(event, ev.Failure):
                self.err.write(f"error: {event.message}\n")
            elif isinstance(event, ev.Done):
                reason = event.reason
        return reason


def _run_once(agent, history, params, question: str, json_out: bool, out: TextIO, err: TextIO) -> int:
    from .messages import Message

    history.append(Message("user", question))
    reason = _Printer(out, err, stream_text=not json_out).render(agent.run(history, params))
    if json_out:
        for message in history:
            out.write(json.dumps(_message_json(message), ensure_ascii=False) + "\n")
    return 1 if reason == "error" else 0


def _repl(agent, history, params, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    """The seed's cli_demo: `clear` resets, `stop` or `exit` quits, Ctrl-C stops an answer."""
    from .messages import Message

    base = list(history)
    printer = _Printer(out, err, stream_text=True)
    out.write("composite chat: type a message; 'clear' resets the history, 'stop' or 'exit' quits.\n")
    while True:
        out.write("\nUser: ")
        out.flush()
        line = stdin.readline()
        if not line:
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("stop", "exit"):
            return 0
        if text == "clear":
            history[:] = list(base)
            out.write("(history cleared)\n")
            continue
        history.append(Message("user", text))
        out.write("\nAssistant: ")
        stop = threading.Event()
        try:
            printer.render(agent.run(history, params, stop))
        except KeyboardInterrupt:
            stop.set()
            err.write("\n(stopped)\n")


# -- commands ------------------------------------------------------------------------------------
def _cmd_chat(args, out, err, stdin) -> int:
    from .agent import Agent

    runtime = _load(args, err)
    agent = Agent(runtime, "chat")
    history = _history("chat", args.system)
    if args.question is None:
        return _repl(agent, history, _params(args), out, err, stdin)
    return _run_once(agent, history, _params(args), args.question, args.json, out, err)


def _tool_agent(args, runtime):
    from tools import build_registry

    from .agent import Agent

    registry, load_errors = build_registry(mcp_config=args.mcp_config)
    load_errors = [*load_errors, *_mcp_problems(registry)]
    enabled = None
    if args.tools:
        enabled = [name.strip() for name in args.tools.split(",") if name.strip()]
        unknown = [name for name in enabled if name not in registry]
        if unknown:
            registry.close()
            raise CompositeError(f"unknown tool(s) {', '.join(unknown)}; available: {', '.join(registry.names())}")
    agent = Agent(runtime, "tool", registry, enabled, max_rounds=args.max_rounds, tool_timeout=args.tool_timeout)
    return agent, load_errors


def _mcp_problems(registry) -> list[str]:
    """MCP servers that are not running, by name, with why (their tools are unavailable)."""
    statuses = registry.mcp.statuses() if registry.mcp is not None else []
    return [status.describe() for status in statuses if not status.available]


def _cmd_tool(args, out, err, stdin) -> int:
    if args.batch is None and args.question is None:
        raise CompositeError("tool needs a question or --batch FILE")
    runtime = _load(args, err)
    agent, load_errors = _tool_agent(args, runtime)
    try:  # the MCP servers this command started stop with it
        for problem in load_errors:
            err.write(f"note: {problem}\n")
        if args.batch is not None:
            from .batch import run_batch

            settings = {"max_rounds": args.max_rounds, "tool_timeout": args.tool_timeout, "tools": args.tools or "all"}
            return run_batch(agent, _history("tool", args.system), _params(args), args.batch, args.out, out, err,
                             record=not args.no_record, settings=settings)
        return _run_once(agent, _history("tool", args.system), _params(args), args.question, args.json, out, err)
    finally:
        agent.registry.close()


def _gateway(args) -> tuple[str, str]:
    """(url, token) of the kernel gateway from the flags, else the environment; url "" = local sandbox."""
    from .sandbox.gateway import check_url, gateway_from_env

    env_url, env_token = gateway_from_env()
    url = (args.kernel_gateway or env_url).strip()
    if args.gateway_token and not url:
        raise CompositeError("--gateway-token needs --kernel-gateway URL (or $COMPOSITE_KERNEL_GATEWAY)")
    return (check_url(url) if url else ""), (args.gateway_token or env_token)


def _executor(args, workdir: str | None):
    url, token = _gateway(args)
    if url:
        if workdir:
            raise CompositeError("--workdir is for the local sandbox; a gateway kernel's files live on the gateway")
        from .sandbox.gateway import GatewayExecutor

        return GatewayExecutor(url, token)
    from .sandbox import Sandbox

    return Sandbox(workdir)


def _ask_code(agent, history, params, out: TextIO, err: TextIO, stdin: TextIO, json_out: bool) -> int:
    """`code --ask`: run the agent; at each pause show the code and ask run / edit / reject."""
    from .agent import Decision, pending_call

    printer = _Printer(out, err, stream_text=not json_out)
    decision = None
    while True:
        reason = printer.render(agent.run(history, params, decision=decision))
        if reason != "awaiting_approval":
            return reason
        call = pending_call(history)
        code = call.code if call is not None else ""
        err.write(f"\nThe model wants to run this code:\n{code}\n")
        while True:
            err.write("Run it? [r]un / [e]dit / [n]o (reject): ")
            err.flush()
            answer = stdin.readline()
            if not answer:  # end of input: nothing runs without a yes
                answer = "n"
            choice = answer.strip().lower()[:1]
            if choice in ("r", "y"):
                decision = Decision("run")
            elif choice == "e":
                err.write("Type the code to run instead; end with a line holding only a dot (.):\n")
                err.flush()
                lines = []
                for line in stdin:
                    if line.rstrip("\r\n") == ".":
                        break
                    lines.append(line)
                decision = Decision("edit", code="".join(lines))
            elif choice == "n":
                decision = Decision("reject")
            else:
                err.write("please answer r, e or n\n")
                continue
            break


def _cmd_code(args, out, err, stdin) -> int:
    from .agent import Agent
    from .messages import Message

    if args.question is None:
        raise CompositeError("code needs a question, e.g. python -m composite code \"what is 2**100?\"")
    executor = _executor(args, args.workdir)
    runtime = _load(args, err)
    try:
        executor.start()
        status = executor.status()
        err.write(f"sandbox: {status.isolation_note}" + (f" ({status.workdir})" if status.workdir else "") + "\n")
        agent = Agent(runtime, "code", sandbox=executor, max_rounds=args.max_rounds, code_timeout=args.timeout,
                      policy="ask" if args.ask else "auto")
        history = _history("code", args.system)
        if not args.ask:
            return _run_once(agent, history, _params(args), args.question, args.json, out, err)
        history.append(Message("user", args.question))
        reason = _ask_code(agent, history, _params(args), out, err, stdin, args.json)
        if args.json:
            for message in history:
                out.write(json.dumps(_message_json(message), ensure_ascii=False) + "\n")
        return 1 if reason == "error" else 0
    finally:
        executor.shutdown()


def _cmd_exec(args, out, err, stdin) -> int:
    from .sandbox import run_exec_cli

    url, token = _gateway(args)
    if url:
        from .sandbox.gateway import GatewayExecutor

        if args.workdir:
            raise CompositeError("--workdir is for the local sandbox; a gateway kernel's files live on the gateway")
        return run_exec_cli(stdin.read(), args.timeout, None, out, lambda: GatewayExecutor(url, token))
    return run_exec_cli(stdin.read(), args.timeout, args.workdir, out)


def _cmd_tools(args, out, err, stdin) -> int:
    from tools import build_registry

    arguments = None
    if args.tools_command == "call":  # check the JSON before starting any MCP server
        try:
            arguments = json.loads(args.arguments)
        except ValueError as exc:
            raise CompositeError(f"the arguments are not valid JSON ({exc}); expected an object such as "
                                 "'{\"expression\": \"6*7\"}'") from exc
        if not isinstance(arguments, dict):
            raise CompositeError(f"the arguments must be a JSON object, got {type(arguments).__name__}")
    registry, problems = build_registry(mcp_config=args.mcp_config)
    try:
        if arguments is not None:
            return _tools_call(registry, problems, args, arguments, out, err)
        _tools_list(registry, problems, args.json, out)
        return 0
    finally:
        registry.close()


def _tools_list(registry, problems, as_json: bool, out: TextIO) -> None:
    statuses = registry.mcp.statuses() if registry.mcp is not None else []
    for tool in registry:
        reason = tool.unavailable_reason()
        if as_json:
            line = {**tool.chatglm3(), "source": tool.source, "available": not reason}
            if reason:
                line["unavailable"] = reason
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        else:
            note = f"  [{tool.source}]" if tool.source != "function" else ""
            out.write(f"{tool.name}: {tool.description}{note}\n")
            out.write(f"  parameters: {json.dumps(tool.schema, ensure_ascii=False)}\n")
            if reason:
                out.write(f"  unavailable: {reason}\n")
    for status in statuses:
        if as_json:
            out.write(json.dumps({"mcp_server": status.to_dict()}, ensure_ascii=False) + "\n")
        else:
            out.write(status.describe() + "\n")
            for problem in status.problems:
                out.write(f"  {problem}\n")
    for problem in problems:
        if as_json:
            out.write(json.dumps({"load_error": str(problem)}, ensure_ascii=False) + "\n")
        else:
            out.write(f"load error: {problem}\n")


def _tools_call(registry, problems, args, arguments: dict, out: TextIO, err: TextIO) -> int:
    """One call through `registry.call`, the route the model's calls take; exit 1 when the call failed."""
    for problem in [*problems, *_mcp_problems(registry)]:
        err.write(f"note: {problem}\n")
    if args.timeout <= 0:
        raise CompositeError(f"--timeout must be positive, got {args.timeout:g}")
    result = registry.call(args.name, arguments, timeout=args.timeout)
    if getattr(args, "json", False):
        out.write(json.dumps({"tool": args.name, "ok": result.ok, "observation": result.observation(),
                              "error": result.error, "timed_out": result.timed_out,
                              "duration": round(result.duration, 4),
                              "images": [image.to_extra() for image in result.images]}, ensure_ascii=False) + "\n")
    else:
        out.write(result.observation() + "\n")
    return 0 if result.ok else 1


def _cmd_convert(args, out, err, stdin) -> int:
    from .backends.chatglm3_checkpoint import convert_cli

    return convert_cli(args.src, args.dst, args.dtype)


def _cmd_serve(args, out, err, stdin) -> int:
    import os

    from .backends.local import load_model, resolve_model_path
    from .server import LOOPBACK, serve

    api_key = args.api_key or os.environ.get("COMPOSITE_API_KEY") or None
    if args.host not in LOOPBACK and not api_key:
        err.write(f"warning: serving on {args.host} without an API key: anyone who can reach it can use the model; "
                  "set --api-key\n")
    path = resolve_model_path(args.model)
    err.write(f"loading {path or 'the embedded model'} ...\n")
    runtime = load_model(path, device=args.device, dtype=args.dtype, quantize=args.quantize,
                         engine=args.engine or os.environ.get("COMPOSITE_ENGINE", "").strip() or "auto")
    name = args.served_model_name or runtime.info.name
    err.write(f"{runtime.info.summary()}\nserving {name!r} on http://{args.host}:{args.port}/v1 "
              f"({'API key required' if api_key else 'no API key'}); Ctrl-C stops\n")
    err.flush()
    serve(runtime, args.host, args.port, api_key, name)
    return 0


def _cmd_export_hf(args, out, err, stdin) -> int:
    from .backends.hf_export import export_hf
    from .backends.local import resolve_model_path
    from .embedded.data import tokenizer_check_texts

    path = resolve_model_path(args.model)
    folder = export_hf(path, args.dst, force=args.force, log=err, check_texts=tokenizer_check_texts())
    out.write(f"wrote {folder}: serve it with `transformers serve {folder}` (or vLLM / SGLang)\n")
    return 0


def _cmd_runs(args, out, err, stdin) -> int:
    from .batch import runs_cli

    return runs_cli(args.action, args.ids, args.json, args.limit, out, err)


def _cmd_bench(args, out, err, stdin) -> int:
    from .bench import main as bench_main

    return bench_main(args, out, err)


COMMANDS = {
    "bench": _cmd_bench,
    "runs": _cmd_runs,
    "chat": _cmd_chat,
    "tool": _cmd_tool,
    "code": _cmd_code,
    "exec": _cmd_exec,
    "tools": _cmd_tools,
    "convert": _cmd_convert,
    "serve": _cmd_serve,
    "export-hf": _cmd_export_hf,
}


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None,
         stdin: TextIO | None = None) -> int:
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, out, err, stdin)
    except CompositeError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
