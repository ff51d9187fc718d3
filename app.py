"""OOD Lab: the Streamlit entry point (``streamlit run app.py``)."""

import streamlit as st

import pages.ui.preload  # noqa: F401  (first: every page's modules, imported by one session at a time)
from ood_core.system import keep_trimming
from pages.ui.boundary import error_boundary
from pages.ui.shell import presentation_style, presenting
from pages.ui.sidebar import sidebar_workspace
from pages.ui.warmup import start_warmup

st.set_page_config(page_title="OOD Lab", page_icon="🔬", layout="wide")
keep_trimming()  # memory freed when sessions end goes back to the system
start_warmup()  # numba compiles the kernels in the background before a table needs them
present = presenting()
navigation = st.navigation(
    {  # three menus, so that presentation mode's top bar holds every page (no "more")
        "Start": [
            st.Page(
                "pages/setup.py",
                title="Setup",
                icon=":material/settings:",
                default=True,
            ),
            st.Page(
                "pages/lecture.py", title="Guided lecture", icon=":material/school:"
            ),
            st.Page("pages/primer.py", title="Primer", icon=":material/menu_book:"),
        ],
        "The five ideas": [
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
        ],
        "Evaluate": [
            st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
            st.Page("pages/ab.py", title="A/B", icon=":material/compare:"),
            st.Page("pages/tune.py", title="Tune", icon=":material/tune:"),
            st.Page("pages/reports.py", title="Reports", icon=":material/table_chart:"),
            st.Page(
                "pages/uploads.py",
                title="Try your own images",
                icon=":material/upload:",
            ),
        ],
    },
    position="top" if present else "sidebar",
    expanded=True,  # every page listed in the sidebar, none behind "View more"
)
with error_boundary():
    sidebar_workspace()
if present:
    presentation_style()
    st.button(
        "Exit presentation mode",
        key="exit_present",
        on_click=lambda: st.session_state.update(present=False),
    )
navigation.run()
