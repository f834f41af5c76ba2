# A Lambda Runtime API loop: run it under `fsvirt serve -- python3 examples/lambda/handler.py`.
# Each event is a tag: the handler reads two files, appends the tag to log.txt and answers with
# the log as it now reads; "sleep" sleeps past any timeout, "crash" exits, "fail" reports an error.
import os, sys, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
data = os.environ.get("FSVIRT_EXAMPLE_DATA") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid, tag = r.headers["Lambda-Runtime-Aws-Request-Id"], r.read().decode()
    if tag == "sleep": time.sleep(3600)
    if tag == "crash": sys.exit(3)
    if tag == "fail":
        err = b'{"errorMessage":"asked to fail","errorType":"Failed"}'
        urllib.request.urlopen(urllib.request.Request(api + rid + "/error", data=err, method="POST")).read()
        continue
    read = sum(len(open(os.path.join(data, f)).read()) for f in ("a.txt", "b.txt"))
    with open(os.path.join(data, "log.txt"), "a") as f: f.write(tag + "\n")
    body = open(os.path.join(data, "log.txt")).read()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=body.encode(), method="POST")).read()
