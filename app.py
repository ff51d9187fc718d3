"""OOD Lab: the Streamlit entry point (``streamlit run app.py``)."""

import streamlit as st

from pages.common import sidebar_workspace

st.set_page_config(page_title="OOD Lab", page_icon="🔬", layout="wide")
navigation = st.navigation(
    [
        st.Page(
            "pages/setup.py", title="Setup", icon=":material/settings:", default=True
        ),
        st.Page("pages/nap.py", title="NAP", icon=":material/scatter_plot:"),
        st.Page(
            "pages/block_selection.py",
            title="Block Selection",
            icon=":material/layers:",
        ),
        st.Page("pages/line.py", title="LINe", icon=":material/hub:"),
        st.Page("pages/heatmaps.py", title="Heatmaps", icon=":material/blur_on:"),
        st.Page(
            "pages/background.py",
            title="Local Background",
            icon=":material/wallpaper:",
        ),
        st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
        st.Page("pages/tune.py", title="Tune", icon=":material/tune:"),
        st.Page(
            "pages/uploads.py",
            title="Try your own images",
            icon=":material/upload:",
        ),
    ]
)
sidebar_workspace()
navigation.run()
