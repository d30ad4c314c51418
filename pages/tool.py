"""Tool mode: the model calls tools (Python functions, user tool folders, MCP servers); every step is shown,
and can need your approval."""

import streamlit as st

from composite.agent import Agent
from pages import _app, _history
from pages import _shared as ui

MODE = "tool"


def _release(built):
    built[0].close()  # the session's MCP servers (child processes) stop with it


@st.cache_resource(show_spinner="Loading tools and starting MCP servers…", scope="session", on_release=_release)
def tool_registry():
    """Built-in tools, every .py file in TOOLS_PATH (default ./my_tools) and the tools of the MCP servers in
    $COMPOSITE_MCP_CONFIG (default ./mcp.json); one per session, so its servers stop with the session."""
    from tools import build_registry

    return build_registry()


ui.page_header(MODE)
runtime = ui.model_sidebar()
params = ui.sampling_sidebar(MODE, runtime.info.context_length if runtime else 8192)
registry, load_failures = tool_registry()

with st.sidebar.expander("Tools", expanded=True):
    enabled = [tool.name for tool in registry
               if st.toggle(tool.name, True, key=f"tool_on_{tool.name}", disabled=not tool.available,
                            help=(f"{tool.description} (from {tool.source})" if tool.available
                                  else f"unavailable: {tool.unavailable_reason()}"))]
    for tool in registry:
        with st.popover(f"Schema: {tool.name}"):
            st.json(tool.chatglm3())
    for failure in load_failures:
        st.error(str(failure))
    for server in (registry.mcp.statuses() if registry.mcp is not None else []):
        if server.available:
            st.success(server.describe(), icon=":material/hub:")
        else:  # its tools are unavailable; the other servers and tools keep working
            st.error(server.describe(), icon=":material/error:")
        for problem in server.problems:
            st.warning(problem)
    if st.button("Reload tools", icon=":material/refresh:", key="tool_reload",
                 help="re-read the user tool folder and restart the MCP servers"):
        tool_registry.clear()
        st.rerun()
with st.sidebar.expander("Loop", expanded=True):
    max_rounds = st.number_input("max tool rounds per question", 1, 20, 5, key="tool_max_rounds")
    timeout = st.number_input("tool timeout (s)", 1, 600, 30, key="tool_timeout")
    ask = st.toggle("Ask before running", False, key="tool_ask")
    manual = st.toggle("Manual mode (you type the results)", False, key="tool_manual")
ui.system_sidebar(MODE)
exports = ui.conversation_sidebar(MODE)
_history.history_sidebar(MODE)
ui.recover_partial(MODE)
history = ui.history(MODE)
_app.welcome(MODE, history, runtime)
ui.starter_prompts(MODE, history)
ui.render_history(history)

policy = "manual" if manual else "ask" if ask else "auto"
if policy != "auto":
    ui.approval_controls(MODE, manual)
prompt = ui.user_input(MODE, "Ask something a tool can answer, e.g. the weather in Oslo")
wanted, decision = ui.pending_run(MODE)
if ui.start_turn(MODE, runtime, prompt, wanted):
    agent = Agent(runtime, MODE, registry, enabled, max_rounds=int(max_rounds), tool_timeout=float(timeout),
                  policy=policy)
    ui.run_agent(MODE, agent, params, decision)
ui.export_buttons(MODE, exports)
