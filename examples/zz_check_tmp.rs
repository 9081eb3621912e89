use custodian::media::crypto::Decryptor;
use custodian::media::keystore::Keystore;
use custodian::repository::record::Conversation;
use custodian::repository::segment::Segment;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

fn plain(path: &Path, enc: bool, ks: &Keystore) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    if enc {
        Decryptor::new(f, |id| ks.key(id))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
    } else {
        std::fs::read(path).map(|b| out = b).unwrap();
    }
    out
}

fn main() {
    let root = Path::new(
        std::env::args()
            .nth(1)
            .as_deref()
            .unwrap_or("fixtures/demo/repo"),
    )
    .to_owned();
    let ks = Keystore::load(Path::new("fixtures/demo/keystore.json")).unwrap();
    let mut n = 0;
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_str().unwrap();
            if name == "conversation.json" {
                let c = Conversation::from_json(&std::fs::read(&p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                for a in &c.artifacts {
                    let f = p.parent().unwrap().join(&a.file);
                    let b = std::fs::read(&f).unwrap();
                    assert_eq!(b.len() as u64, a.size, "{}", f.display());
                    assert_eq!(hex::encode(Sha256::digest(&b)), a.sha256, "{}", f.display());
                    if a.encryption.is_some() {
                        let pl = plain(&f, true, &ks);
                        let r = hound::WavReader::new(&pl[..]).unwrap();
                        println!(
                            "decrypted {} -> {:?} {} frames",
                            f.display(),
                            r.spec(),
                            r.duration()
                        );
                    }
                }
                n += 1;
            } else if name.ends_with(".json") && p.to_str().unwrap().contains("/channels/") {
                let s = Segment::from_json(&std::fs::read(&p).unwrap()).unwrap();
                let f = p.parent().unwrap().join(&s.file);
                let b = std::fs::read(&f).unwrap();
                assert_eq!(b.len() as u64, s.size);
                assert_eq!(hex::encode(Sha256::digest(&b)), s.sha256);
                let pl = plain(&f, s.encryption.is_some(), &ks);
                let r = hound::WavReader::new(&pl[..]).unwrap();
                assert_eq!(u64::from(r.duration()), s.frames);
                println!(
                    "segment {} start {} frames {} enc {}",
                    s.file,
                    s.start,
                    s.frames,
                    s.encryption.is_some()
                );
            }
        }
    }
    println!("{n} conversations OK");
}
