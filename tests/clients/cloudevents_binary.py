"""Sends one CloudEvent to sighost in HTTP binary mode, encoded by the
CloudEvents Python SDK (what its users send), and prints the answer as one
JSON line: {"status": ..., "body": ...}.

    python cloudevents_binary.py URL TOKEN
"""

import datetime
import json
import sys
import urllib.error
import urllib.request

from cloudevents.core.bindings import http
from cloudevents.core.v1.event import CloudEvent

url, token = sys.argv[1], sys.argv[2]
event = CloudEvent(
    attributes={
        "type": "forum.thread.created",
        "source": "/forum/board 7",
        "id": "binary-1",
        "subject": "thread:t_77",
        "time": datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc),
        "datacontenttype": "application/json",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    },
    data={"thread_id": "t_77", "title": "sent in binary mode"},
)
message = http.to_binary_event(event)
request = urllib.request.Request(url, data=message.body, method="POST")
for name, value in message.headers.items():
    request.add_header(name, value)
request.add_header("Authorization", f"Bearer {token}")
try:
    with urllib.request.urlopen(request) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(body)}))
