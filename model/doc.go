// Package model is a pure model of the copy-on-write view: no syscalls, just
// maps. It predicts the [fsvirt.Outcome] of every op and how the view serves
// it ([Decision]): from the shared tree, from the invocation's private layer,
// or after copying the file up into that layer.
//
// State: the shared tree, which no op modifies; per invocation, its private
// layer (files copied up or created, by canonical path) and its open-files
// table (per handle: the node and layer the fd refers to, its canonical path,
// offset and flags).
//
// The view has no operation that creates or removes directories or symlinks,
// so an invocation's namespace is the shared tree's plus the regular files it
// created; a private file shadows the shared file of the same path. Paths
// resolve as Linux resolves them (symlinks, ".", "..", trailing slashes,
// at most 40 symlinks), with the tree root as "/" and as working directory.
// '..' at the root stays there, as in a chroot; ops that do so are not
// [Model.Defined], because the engine, which runs without a chroot, would
// leave the tree.
//
// The caller is root: permission bits never refuse access.
//
// A Model is not safe for concurrent use.
package model
