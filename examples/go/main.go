// libmsa from Go (cgo): encode documents, generate greedily with streaming, print what was retrieved,
// cancel from a callback. usage: msa-example <checkpoint dir>
package main

import (
	"fmt"
	"os"
	"strings"

	"example.com/msaexample/msa"
)

var docs = []string{"The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
	"Python was created by Guido van Rossum.", "Bananas are rich in potassium."}

const prompt = "How tall is Mount Everest?"

func run(dir string) error {
	fmt.Printf("libmsa %s\n", msa.Version())
	model, err := msa.LoadModel(dir)
	if err != nil {
		return err
	}
	defer model.Close()
	memory, err := msa.NewMemory(model)
	if err != nil {
		return err
	}
	defer memory.Close() // deferred calls run last-in first-out: the bank is freed before its model
	progressCalls := 0
	if _, err := memory.AddDocuments(docs, func(done, total int64) bool { progressCalls++; return true }); err != nil {
		return err
	}
	fmt.Printf("documents: 4 added, progress calls: %d\n", progressCalls)

	params, err := msa.NewGenerateParams()
	if err != nil {
		return err
	}
	msa.Greedy(&params, 2, 16, 7)
	fmt.Print("stream: ")
	res, err := memory.Generate(prompt, &params, func(piece []byte) bool { os.Stdout.Write(piece); return true })
	if err != nil {
		return err
	}
	defer res.Close()
	fmt.Println()
	toks := []string{}
	for _, t := range res.Tokens() {
		toks = append(toks, fmt.Sprint(t))
	}
	fmt.Printf("tokens: %s\n", strings.Join(toks, " "))
	fmt.Printf("stop: %s\n", res.StopReason())
	for _, r := range res.Retrieved() {
		for _, id := range r.IDs {
			fmt.Printf("retrieved: layer %d [%d] %s\n", r.Layer, id, docs[id])
		}
	}

	pieces := 0
	stopped, err := memory.Generate(prompt, &params, func([]byte) bool { pieces++; return false })
	if err != nil {
		return err
	}
	defer stopped.Close()
	fmt.Printf("cancelled: %s after %d piece(s), %d token(s)\n", msa.StatusName(stopped.Status), pieces,
		len(stopped.Tokens()))
	if !stopped.Cancelled {
		return fmt.Errorf("generation was not cancelled")
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s <checkpoint dir>\n", os.Args[0])
		os.Exit(2)
	}
	if !msa.VersionCompatible() {
		fmt.Fprintf(os.Stderr, "libmsa %s cannot serve this program\n", msa.Version())
		os.Exit(1)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
