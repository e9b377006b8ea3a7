# The SD card image and its tests (board/README.md). Included by the Makefile.
IMAGE_SH := scripts/image
IMAGE := out/peerline-$(VERSION)-arm64.img

.PHONY: image-deps rootfs image bootcheck qemu-test qemu-pi test-image image-smoke clean-image

image-deps: ## host packages for the SD image and its boot test (apt; idempotent)
	@$(IMAGE_SH)/deps.sh

rootfs: image-deps ## Debian arm64 root filesystem build/rootfs.tar, cached by its inputs (FORCE=1 rebuilds; root)
	@$(IMAGE_SH)/rootfs.sh

image: image-deps rootfs build-arm64 ## SD card image out/peerline-VERSION-arm64.img, .img.zst, .sha256 (root)
	@VERSION=$(VERSION) $(IMAGE_SH)/assemble.sh

bootcheck: image-deps ## check the cached rootfs' initramfs against every Pi device tree (also part of make image)
	@$(IMAGE_SH)/bootcheck.sh

qemu-test: image-deps ## boot the image in qemu: peerlined READY, a phone pings its gateway (root)
	@$(IMAGE_SH)/qemu-test.sh $(IMAGE)

qemu-pi: image-deps ## boot the image in qemu's Pi models as the firmware would: raspi3b to READY, raspi4b to emmc2 probing (root)
	@$(IMAGE_SH)/qemu-pi.sh raspi3b $(IMAGE)
	@$(IMAGE_SH)/qemu-pi.sh raspi4b $(IMAGE)

# VERSION is fixed once: git describe changes when someone commits while the
# image builds, and qemu-test would then look for an image never built.
test-image: ## make image, then make qemu-test and make qemu-pi
	@v='$(VERSION)'; $(MAKE) --no-print-directory image VERSION="$$v" && \
		$(MAKE) --no-print-directory qemu-test VERSION="$$v" && \
		$(MAKE) --no-print-directory qemu-pi VERSION="$$v"

image-smoke: build-arm64 ## fast CI check: arm64 binaries under qemu-user, -version and -check-config
	@$(IMAGE_SH)/deps.sh smoke
	@$(IMAGE_SH)/smoke.sh

clean-image: ## remove image build output (build/, out/), including the rootfs and .deb caches
	rm -rf build out
