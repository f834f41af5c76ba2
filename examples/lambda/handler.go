// Command handler is a Lambda Runtime API loop: build it, and run it under
// `fsvirt serve -- ./handler`. Each event is a tag: the handler reads two files, appends the tag
// to log.txt and answers with the log as it now reads; "sleep" sleeps past any timeout, "crash"
// exits. FSVIRT_EXAMPLE_DATA names the data directory (default: ./data).
package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	data := os.Getenv("FSVIRT_EXAMPLE_DATA")
	if data == "" {
		data = "data"
	}
	for {
		r, err := http.Get(api + "next")
		if err != nil {
			os.Exit(1)
		}
		event, _ := io.ReadAll(r.Body)
		r.Body.Close()
		rid, tag := r.Header.Get("Lambda-Runtime-Aws-Request-Id"), string(event)
		switch tag {
		case "sleep":
			time.Sleep(time.Hour)
		case "crash":
			os.Exit(3)
		}
		for _, f := range []string{"a.txt", "b.txt"} {
			os.ReadFile(filepath.Join(data, f))
		}
		if f, err := os.OpenFile(filepath.Join(data, "log.txt"), os.O_APPEND|os.O_WRONLY, 0); err == nil {
			f.WriteString(tag + "\n")
			f.Close()
		}
		body, _ := os.ReadFile(filepath.Join(data, "log.txt"))
		resp, err := http.Post(api+rid+"/response", "text/plain", bytes.NewReader(body))
		if err != nil {
			os.Exit(1)
		}
		resp.Body.Close()
	}
}
