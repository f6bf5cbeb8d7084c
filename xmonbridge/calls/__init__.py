"""Button calls (R7–R9, R12): the call a callee works from the keypad. No request code.

* `aggregate.py` — alerts join their setting's active notification (or start one);
* `compose.py` — what is said: summary, details, key guide, through the replacements;
* `flow.py` — the state machine: answer, keys, the end of a call, re-calls and 輪番;
* `testcall.py` — メッセージテンプレート's テスト通話.
* `recipients.py` — users taken off a setting or deleted stop being called; 「通知を終了」.

The dispatcher places the calls and the acknowledgements; webhooks/ hands Twilio's requests
to flow.py and turns its replies into TwiML (twiml.py).
"""
