"""A minimal Lambda Runtime API client for the Python peer: what the Python managed runtime's
bootstrap does, in a few dozen lines (awslambdaric is not used: this keeps the peer to crhelper
and boto3, and adds no import time of its own).

Loop: GET /2018-06-01/runtime/invocation/next → handler(event, context) → POST …/response
(or …/error). Init errors are POSTed to /runtime/init/error.
"""

import http.client
import json
import os
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"


class Context:
    """The parts of the Lambda context object that crhelper reads."""

    def __init__(self, request_id, deadline_ms):
        self.aws_request_id = request_id
        self._deadline_ms = deadline_ms
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/function")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.invoked_function_arn = ""

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def post(conn, path, body, headers=None):
    data = json.dumps(body).encode()
    conn.request("POST", BASE + path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    conn.getresponse().read()


def error_body(e):
    return {"errorMessage": str(e), "errorType": type(e).__name__,
            "stackTrace": traceback.format_exception(type(e), e, e.__traceback__)}


def main():
    conn = http.client.HTTPConnection(API)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        module, name = os.environ.get("_HANDLER", "connector.handler").rsplit(".", 1)
        handler = getattr(__import__(module), name)
    except Exception as e:  # noqa: BLE001 — reported to the Runtime API like the managed runtime does
        traceback.print_exc()
        post(conn, "/init/error", error_body(e), {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
        sys.exit(1)
    while True:
        conn.request("GET", BASE + "/invocation/next")
        resp = conn.getresponse()
        event = json.loads(resp.read())
        request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
        context = Context(request_id, int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0))
        try:
            result = handler(event, context)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            post(conn, f"/invocation/{request_id}/error", error_body(e),
                 {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        post(conn, f"/invocation/{request_id}/response", result)


if __name__ == "__main__":
    main()
