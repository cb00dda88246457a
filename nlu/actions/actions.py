"""Custom actions, run by the Rasa SDK action server inside the Rasa environment (Python 3.10).

They hold no database credentials and never see an address: the tip goes to the gateway's
/internal/tips endpoint (shared token), which computes urgency and stores it. The receipt code
is given only after the gateway confirms the tip is stored.
"""

import hashlib
import logging
import os
from typing import Any, Dict, List, Optional, Text

import aiohttp
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

logger = logging.getLogger(__name__)

TIP_SLOTS = ("tip_what", "tip_where", "tip_when", "tip_danger")
MAX_FIELD = 2000


def _gateway() -> str:
    return os.environ.get("TIPLINE_GATEWAY_URL", "http://127.0.0.1:8000").rstrip("/")


def _token() -> str:
    return os.environ.get("TIPLINE_ACTIONS__TOKEN", "")


def _clean(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())[:MAX_FIELD]
    return value or None


class ValidateTipForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_tip_form"

    def validate_tip_what(self, value: Any, dispatcher: CollectingDispatcher,
                          tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        return {"tip_what": _clean(value)}

    def validate_tip_where(self, value: Any, dispatcher: CollectingDispatcher,
                           tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        return {"tip_where": _clean(value)}

    def validate_tip_when(self, value: Any, dispatcher: CollectingDispatcher,
                          tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        return {"tip_when": _clean(value)}

    def validate_tip_danger(self, value: Any, dispatcher: CollectingDispatcher,
                            tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        if value is True:
            # At once, before anything else: who to call while we keep taking the report.
            dispatcher.utter_message(response="utter_emergency_number")
        return {"tip_danger": value if isinstance(value, bool) else None}


class ActionPrefillTip(Action):
    """The first message often is the tip itself: keep it as `what` instead of asking again."""

    def name(self) -> Text:
        return "action_prefill_tip"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        text = _clean(tracker.latest_message.get("text"))
        events: List[EventType] = []
        if text and len(text.split()) >= 3:
            events.append(SlotSet("tip_what", text))
        if tracker.latest_message.get("intent", {}).get("name") == "danger_now":
            events.append(SlotSet("tip_danger", True))
            dispatcher.utter_message(response="utter_emergency_number")
        return events


class ActionSubmitTip(Action):
    def name(self) -> Text:
        return "action_submit_tip"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        slots = {name: tracker.get_slot(name) for name in TIP_SLOTS}
        # Same conversation turn -> same key: a retried action never makes a second tip.
        last_user = next((e for e in reversed(tracker.events) if e.get("event") == "user"), {})
        key_source = "|".join([tracker.sender_id, str(last_user.get("timestamp", "")),
                               *(str(slots[n]) for n in TIP_SLOTS)])
        payload = {
            "reporter_id": tracker.sender_id,
            "submission_key": hashlib.sha256(key_source.encode()).hexdigest(),
            "what": slots["tip_what"] or "",
            "where_text": slots["tip_where"] or "",
            "when_text": slots["tip_when"] or "",
            "danger_now": bool(slots["tip_danger"]),
            "language": tracker.get_slot("language") or "",
            "channel": tracker.get_slot("channel") or "",
        }
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.post(f"{_gateway()}/internal/tips", json=payload,
                                     headers={"Authorization": f"Bearer {_token()}"}) as response:
                    if response.status != 200:
                        raise RuntimeError(f"gateway answered {response.status}")
                    receipt = (await response.json())["receipt_code"]
        except Exception as exc:  # noqa: BLE001  (any failure means: not stored, say so)
            logger.warning("actions.submit_tip.failed %s", type(exc).__name__)
            dispatcher.utter_message(response="utter_tip_not_saved")
            return []
        dispatcher.utter_message(response="utter_tip_received", receipt_code=receipt)
        dispatcher.utter_message(response="utter_anything_else", receipt_code=receipt)
        return [SlotSet("receipt_code", receipt), *(SlotSet(n, None) for n in TIP_SLOTS)]


class ActionResetTip(Action):
    def name(self) -> Text:
        return "action_reset_tip"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        return [SlotSet(n, None) for n in TIP_SLOTS]
