// A Lambda Runtime API loop: run it under `fsvirt serve -- node examples/lambda/handler.js`.
// Each event is a tag: the handler reads two files, appends the tag to log.txt and answers with
// the log as it now reads; "sleep" sleeps past any timeout, "crash" exits.
const fs = require("fs"), path = require("path");
const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/`;
const data = process.env.FSVIRT_EXAMPLE_DATA || path.join(__dirname, "data");
(async () => {
  for (;;) {
    const r = await fetch(api + "next"), rid = r.headers.get("lambda-runtime-aws-request-id"), tag = await r.text();
    if (tag === "sleep") await new Promise((ok) => setTimeout(ok, 3600e3));
    if (tag === "crash") process.exit(3);
    const read = ["a.txt", "b.txt"].reduce((n, f) => n + fs.readFileSync(path.join(data, f)).length, 0);
    fs.appendFileSync(path.join(data, "log.txt"), tag + "\n");
    const body = fs.readFileSync(path.join(data, "log.txt"), "utf8");
    await (await fetch(api + rid + "/response", { method: "POST", body })).text();
  }
})();
