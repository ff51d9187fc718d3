"""Streamlit's own websocket protocol, spoken as a browser tab does: open a page (its query string), read the
deltas of the run, move a slider (a fragment's slider reruns only its fragment). For benchmarks that need many
sessions without a browser each (``benchmarks/bench_classroom.py``) and for tests through a proxy."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

import websocket
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

FINISHED_EARLY_FOR_RERUN = (
    2  # ForwardMsg.ScriptFinishedStatus: a rerun follows, keep reading
)
ALERT_ERROR = 1  # Alert.Format.ERROR


@dataclass
class Slider:
    id: str
    label: str
    low: float
    high: float
    step: float
    value: float
    fragment: str


@dataclass
class Run:
    seconds: float
    sliders: list[Slider]
    errors: list[str]


class Student:
    """One browser tab's worth of Streamlit protocol: open pages, move sliders, time each rerun. ``cookie`` holds
    the cookies the app's URL set first (a proxy's sticky-session cookie), sent with the websocket as a browser
    does."""

    def __init__(self, url: str, timeout: float):
        address = urlparse(url)
        with urllib.request.urlopen(
            url, timeout=timeout
        ) as page:  # as a browser: a proxy's sticky cookie first
            self.cookie = "; ".join(
                c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or []
            )
        self.socket = websocket.create_connection(
            f"ws://{address.netloc}/_stcore/stream",
            timeout=timeout,
            cookie=self.cookie or None,
        )
        self.pages: dict[
            str, str
        ] = {}  # url path -> page script hash, from the navigation message
        self.page = ""
        self.query = ""

    def close(self) -> None:
        self.socket.close()

    def _send(self, widgets: list[WidgetState] = (), fragment: str = "") -> None:
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query
        if self.page in self.pages:
            state.page_script_hash = self.pages[self.page]
        else:
            state.page_name = self.page
        state.widget_states.widgets.extend(widgets)
        state.fragment_id = fragment
        self.socket.send_binary(message.SerializeToString())

    def _read_run(self) -> Run:
        start = time.perf_counter()
        last, sliders, errors = start, [], []
        while True:
            frame = self.socket.recv()
            if not isinstance(frame, bytes):  # not one of Streamlit's protobuf messages
                continue
            message = ForwardMsg()
            message.ParseFromString(frame)
            kind = message.WhichOneof("type")
            if kind == "navigation":
                self.pages.update(
                    {
                        p.url_pathname: p.page_script_hash
                        for p in message.navigation.app_pages
                    }
                )
            elif kind == "delta":
                last = time.perf_counter()
                if message.delta.WhichOneof("type") == "new_element":
                    element = message.delta.new_element
                    which = element.WhichOneof("type")
                    if which == "slider" and not element.slider.options:
                        s = element.slider
                        value = s.value[0] if s.set_value and s.value else s.default[0]
                        sliders.append(
                            Slider(
                                s.id,
                                s.label,
                                s.min,
                                s.max,
                                s.step,
                                value,
                                message.delta.fragment_id,
                            )
                        )
                    elif which == "exception":
                        errors.append(f"exception: {element.exception.message}")
                    elif which == "alert" and element.alert.format == ALERT_ERROR:
                        errors.append(f"error: {element.alert.body[:120]}")
            elif (
                kind == "script_finished"
                and message.script_finished != FINISHED_EARLY_FOR_RERUN
            ):
                return Run(last - start, sliders, errors)

    def open(self, page: str, query: dict[str, str]) -> Run:
        self.page, self.query = page, urlencode(query)
        self._send()
        return self._read_run()

    def move(self, slider: Slider, value: float) -> Run:
        state = WidgetState(id=slider.id)
        state.double_array_value.data[:] = [value]
        self._send([state], slider.fragment)
        return self._read_run()
