"""
Thaw's Python runtime: runs INSIDE an execution environment and talks to the host only through the
Lambda Runtime API (2018-06-01). Standard library only.

    python3 /var/runtime/python/bootstrap.py [--runtime-api-socket PATH]

With --runtime-api-socket it speaks HTTP over that Unix socket, else over TCP to AWS_LAMBDA_RUNTIME_API
(host:port), on one persistent connection.

Behaviour follows AWS's Python runtime interface client (github.com/aws/aws-lambda-python-runtime-interface-client,
awslambdaric/bootstrap.py, lambda_context.py): handler resolution and its Runtime.* errors, the error body
{errorMessage, errorType, requestId, stackTrace}, the context object, the logging format
"[LEVEL]\t<time>\t<request id>\t<message>" and error log lines joined with \r. Differences: no simplejson
(Decimal is encoded as int/float), no X-Ray error cause header, no SnapStart hooks yet.
"""

import http.client
import json
import os
import socket
import sys
import time
import traceback

API = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_LOG_LINE_TERMINATE = "\r"
ERROR_LOG_IDENT = "\u00a0"  # NO-BREAK SPACE, as Lambda indents stack lines in logs

_request_id = None


class FaultException(Exception):
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        super().__init__(msg)
        self.msg = msg
        self.exception_type = exception_type
        self.trace = trace


# ----------------------------------------------------------------------------------------------------------
# Runtime API client


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


class RuntimeClient:
    def __init__(self, socket_path, host_port):
        self.socket_path = socket_path
        self.host_port = host_port
        self.conn = None

    def _connection(self):
        if self.conn is None:
            if self.socket_path is not None:
                self.conn = UnixHTTPConnection(self.socket_path)
            else:
                host, _, port = self.host_port.rpartition(":")
                self.conn = http.client.HTTPConnection(host.strip("[]"), int(port))
        return self.conn

    def call(self, method, path, body=None, headers=None):
        """One request on the persistent connection; reconnects once if the connection was dropped."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                return response.status, response.headers, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self.conn = None
                if attempt == 1:
                    raise

    def next(self):
        status, headers, body = self.call("GET", API + "/invocation/next")
        if status != 200:
            raise RuntimeError("Failed to get next invocation: HTTP %d %s" % (status, body[:200]))
        return headers, body

    def post_result(self, invoke_id, body, content_type):
        self.call(
            "POST",
            "%s/invocation/%s/response" % (API, _quote(invoke_id)),
            body,
            {"Content-Type": content_type},
        )

    def post_error(self, invoke_id, error):
        self.call(
            "POST",
            "%s/invocation/%s/error" % (API, _quote(invoke_id)),
            to_json(error).encode("utf-8"),
            {"Content-Type": "application/json", ERROR_TYPE_HEADER: _header_safe(error["errorType"])},
        )

    def post_init_error(self, error):
        self.call(
            "POST",
            API + "/init/error",
            to_json(error).encode("utf-8"),
            {"Content-Type": "application/json", ERROR_TYPE_HEADER: _header_safe(error["errorType"])},
        )


def _quote(s):
    from urllib.parse import quote

    return quote(s, safe="")


def _header_safe(t):
    s = "".join(c for c in str(t) if " " <= c <= "~")
    return s or "Unknown"


# ----------------------------------------------------------------------------------------------------------
# JSON


def _json_default(obj):
    import decimal

    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_ENSURE_ASCII = os.environ.get("AWS_EXECUTION_ENV", "") not in {
    "AWS_Lambda_python3.12",
    "AWS_Lambda_python3.13",
    "AWS_Lambda_python3.14",
}


def to_json(obj):
    return json.dumps(obj, default=_json_default, ensure_ascii=_ENSURE_ASCII, allow_nan=True)


def marshal_response(response):
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return to_json(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException(FaultException.MARSHAL_ERROR, "Unable to marshal response: {}".format(str(e)), None)


# ----------------------------------------------------------------------------------------------------------
# Handler loading


def get_handler(handler):
    import importlib

    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(handler, str(e))
        )
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                FaultException.BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module {} as a handler module".format(modname),
            )
        m = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR, "Unable to import module '{}': {}".format(modname, str(e))
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR, "Syntax error in module '{}': {}".format(modname, str(e)), trace
        )
    try:
        return getattr(m, fname)
    except AttributeError:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND, "Handler '{}' missing on module '{}'".format(fname, modname), None
        )


# ----------------------------------------------------------------------------------------------------------
# Errors


def make_error(error_message, error_type, stack_trace, invoke_id=None):
    return {
        "errorMessage": error_message if error_message else "",
        "errorType": error_type if error_type else "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def build_fault_result(exc_info, invoke_id=None):
    etype, value, tb = exc_info
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i in range(len(frames)):
        if "/bootstrap.py" not in frames[i][0]:
            frames = frames[i:]
            break
    return make_error(str(value), etype.__name__, traceback.format_list(frames), invoke_id)


def _replace_indentation(line, indent_char, new_indent_char):
    n = len(line) - len(line.lstrip(indent_char))
    return new_indent_char * n + line[n:]


def log_error(error):
    description = "[ERROR]"
    if error.get("errorType"):
        description += " " + error["errorType"]
    if error.get("errorMessage"):
        if error.get("errorType"):
            description += ":"
        description += " " + error["errorMessage"]
    lines = [description]
    stack = error.get("stackTrace")
    if stack is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack:
            if element == "":
                lines.append("")
            else:
                for line in element.splitlines():
                    lines.append(_replace_indentation(line, " ", ERROR_LOG_IDENT))
    sys.stdout.write(ERROR_LOG_LINE_TERMINATE.join(lines) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Context (lambda_context.py)


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field, None))
    return obj


class LambdaContext(object):
    def __init__(self, invoke_id, client_context, cognito_identity, epoch_deadline_time_in_ms, invoked_function_arn):
        self.aws_request_id = invoke_id
        self.log_group_name = _FN["log_group_name"]
        self.log_stream_name = _FN["log_stream_name"]
        self.function_name = _FN["function_name"]
        self.memory_limit_in_mb = _FN["memory_limit_in_mb"]
        self.function_version = _FN["function_version"]
        self.invoked_function_arn = invoked_function_arn
        self.client_context = _obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = _obj_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        delta_ms = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta_ms if delta_ms > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
            "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


_FN = {}


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise FaultException(
            FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR, "Unable to parse {} JSON: {}".format(name, str(e)), None
        )


# ----------------------------------------------------------------------------------------------------------
# Logging and stdout


class Unbuffered(object):
    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, attr):
        return getattr(self.stream, attr)

    def write(self, msg):
        self.stream.write(msg)
        self.stream.flush()

    def writelines(self, msgs):
        self.stream.writelines(msgs)
        self.stream.flush()


def setup_logging():
    import logging

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            sys.stdout.write(self.format(record))

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id or ""
            return True

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    if level in logging._nameToLevel:
        root.setLevel(level)


# ----------------------------------------------------------------------------------------------------------
# The loop


def handle(client, request_handler, headers, body):
    global _request_id
    invoke_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    _request_id = invoke_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    error = None
    try:
        client_context = headers.get("Lambda-Runtime-Client-Context")
        cognito_identity = headers.get("Lambda-Runtime-Cognito-Identity")
        context = LambdaContext(
            invoke_id,
            _parse_json_header(client_context, "Client Context") if client_context else None,
            _parse_json_header(cognito_identity, "Cognito Identity") if cognito_identity else None,
            int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        )
        content_type = headers.get("Content-Type") or "application/json"
        if content_type == "application/json":
            try:
                event = json.loads(body)
            except Exception as e:
                raise FaultException(
                    FaultException.UNMARSHAL_ERROR, "Unable to unmarshal input: {}".format(str(e)), None
                )
        else:
            event = body
        response = request_handler(event, context)
        result, result_content_type = marshal_response(response)
    except FaultException as e:
        error = make_error(e.msg, e.exception_type, e.trace, invoke_id)
    except Exception:
        error = build_fault_result(sys.exc_info(), invoke_id)

    if error is not None:
        log_error(error)
        client.post_error(invoke_id, error)
    else:
        client.post_result(invoke_id, result, result_content_type)


def main():
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)

    socket_path = None
    if "--runtime-api-socket" in sys.argv:
        i = sys.argv.index("--runtime-api-socket")
        if i + 1 < len(sys.argv):
            socket_path = sys.argv[i + 1]
    host_port = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if socket_path is None and not host_port:
        sys.stderr.write("thaw runtime: AWS_LAMBDA_RUNTIME_API is not set and no --runtime-api-socket was given\n")
        sys.exit(1)
    client = RuntimeClient(socket_path, host_port)

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    _FN.update(
        function_name=function_name,
        function_version=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        memory_limit_in_mb=os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        or ("/aws/lambda/" + function_name if function_name else None),
        log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
    )

    # The task root replaces this script's own directory at the head of sys.path (Lambda: /var/task first).
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = task_root
    elif task_root not in sys.path:
        sys.path.insert(0, task_root)

    error = None
    try:
        setup_logging()
        request_handler = get_handler(os.environ.get("_HANDLER") or "")
    except FaultException as e:
        error = make_error(e.msg, e.exception_type, e.trace)
    except Exception:
        error = build_fault_result(sys.exc_info())
    if error is not None:
        log_error(error)
        client.post_init_error(error)
        sys.exit(1)

    while True:
        headers, body = client.next()
        handle(client, request_handler, headers, body)


if __name__ == "__main__":
    main()
