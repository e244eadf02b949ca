// Command bare serves one file's bytes from memory at every path, with
// nothing else: no authentication, no store, no decryption. bench/readpath.sh
// runs it beside ehrvault in the same run, as the ceiling that ehrvault's
// authenticated, decrypting reads are compared with.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8099", "address to listen on")
	file := flag.String("file", "", "the file whose bytes every request gets")
	flag.Parse()
	body, err := os.ReadFile(*file)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
