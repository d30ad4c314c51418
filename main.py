"""composite: chat with a local LLM in Chat, Tool and Code Interpreter modes. Run: streamlit run main.py"""

import streamlit as st

st.set_page_config(page_title="composite", page_icon="🧩", layout="wide")

pages = [
    st.Page("pages/chat.py", title="Chat", icon="💬", url_path="chat", default=True),
    st.Page("pages/tool.py", title="Tool", icon="🛠️", url_path="tool"),
    st.Page("pages/code.py", title="Code Interpreter", icon="🧑‍💻", url_path="code"),
]
st.navigation(pages).run()
