// Command bootcheck is the image build's check that the initramfs can mount
// the root filesystem on every Pi the card supports: it walks each device
// tree from the SD card's controller through everything it depends on and
// fails naming any driver that is a module missing from the initramfs
// (package bootcheck, board/README.md).
//
//	bootcheck -modules DIR -initramfs LIST -rules FILE [-v] DTB...
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/bootcheck"
)

func main() {
	var o bootcheck.Options
	flag.StringVar(&o.ModulesDir, "modules", "", "the kernel's modules directory (modules.alias, modules.dep, modules.builtin, modules.builtin.modinfo)")
	flag.StringVar(&o.InitramfsList, "initramfs", "", "listing of the initramfs, one path a line (cpio -t)")
	flag.StringVar(&o.RootRules, "rules", "board/rpi/rootdev", "file of \"DTB-GLOB LABEL\" lines naming each board's root device")
	flag.BoolVar(&o.Verbose, "v", false, "list every needed node, not only problems")
	flag.Parse()
	o.DTBs = flag.Args()
	if err := bootcheck.Run(o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bootcheck: %v\n", err)
		os.Exit(1)
	}
}
