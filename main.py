"""composite: chat with a local LLM in Chat, Tool and Code Interpreter modes. Run: streamlit run main.py"""

from pages._app import run_app

run_app()
