// Package fsvirt holds the contract shared by the copy-on-write view and the
// implementations it is tested against: the operation vocabulary ([Op],
// [OpKind]), what an operation returns ([Outcome]) and the [FS] interface.
//
// Three implementations satisfy [FS]:
//
//   - model: a pure model of the view, which also says how the view serves
//     each operation (pass through, redirect to the private copy, copy up
//     first);
//   - oracle: the kernel's behaviour on a private full copy of the shared tree
//     per invocation, and on an overlayfs mount;
//   - the seccomp engine in impl, driven through real syscalls of a sandboxed
//     thread.
//
// Operations name files by handles, small integers the implementation assigns
// the way the kernel assigns fd numbers (the lowest free one, from 0), so that
// the model can predict them. Paths are resolved in a tree whose root is "/"
// and the invocation's first working directory: "/a/f", "a/f" and "./a/f"
// name the same file until a chdir.
//
// The view promises, per invocation:
//
//   - the shared tree is never modified;
//   - an invocation sees its own writes and none of another invocation's;
//   - a file is copied into the private layer only by an op that writes its
//     data or metadata (an open with O_WRONLY, O_RDWR or O_TRUNC, truncate,
//     chmod, chown, utimensat, setxattr, removexattr) or links it, at most
//     once per file; rename and unlink copy nothing;
//   - an fd keeps the file it was opened on: an fd opened read-only before the
//     invocation copied the file up still reads the shared file (docs/kernel.md,
//     "Descriptors opened before a copy-up"); a directory fd opened before the invocation changed the
//     directory lists the shared directory's entries;
//   - when the invocation ends, nothing of it is left.
package fsvirt
