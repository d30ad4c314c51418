"""Chat mode: talk with the model; the answer streams token by token."""

from composite.agent import Agent
from pages import _app, _history
from pages import _shared as ui

MODE = "chat"

ui.page_header(MODE)
runtime = ui.model_sidebar()
params = ui.sampling_sidebar(MODE, runtime.info.context_length if runtime else 8192)
ui.system_sidebar(MODE)
exports = ui.conversation_sidebar(MODE)
_history.history_sidebar(MODE)
ui.recover_partial(MODE)
history = ui.history(MODE)
_app.welcome(MODE, history, runtime)
ui.starter_prompts(MODE, history)
ui.render_history(history)

prompt = ui.user_input(MODE, "Ask anything")
wanted, _ = ui.pending_run(MODE)
if ui.start_turn(MODE, runtime, prompt, wanted):
    ui.run_agent(MODE, Agent(runtime, MODE), params)
ui.export_buttons(MODE, exports)
